"""The simulated broker: account, market orders, positions and trade updates, persisted on every change.

Market orders fill at the market's current price plus slippage while the session is open; submitted
while it is closed they are accepted and queued for the next open, as Alpaca does for day orders.
Every request is fully validated before anything changes, so a refused request changes nothing.
"""

from __future__ import annotations

import functools
import math
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

from openbell.sim.errors import ApiError, bad_request, forbidden, not_found, unprocessable
from openbell.sim.playback import iso_z
from openbell.sim.store import StateStore

WORKING = ("accepted", "new", "pending_new", "partially_filled")
OPEN_STATUSES = (*WORKING, "held", "pending_cancel", "pending_replace", "accepted_for_bidding")
TIFS = ("day", "gtc", "ioc", "fok", "opg", "cls")
ASSET_NS = uuid.UUID("6f1d7c8e-3a55-4f0e-9a59-0c1b8d1f2a10")
EPS = 1e-9


class Market(Protocol):
    """What the broker needs to know about the market at the simulator's current time."""

    def now(self) -> datetime: ...
    def is_open(self) -> bool: ...
    def price(self, symbol: str) -> float | None: ...
    def prev_close(self, symbol: str) -> float | None: ...
    def known(self, symbol: str) -> bool: ...
    def exchange(self, symbol: str) -> str: ...


@functools.cache
def asset_id(symbol: str) -> str:
    """A stable asset id for a symbol."""
    return str(uuid.uuid5(ASSET_NS, symbol))


def fmt(x: float | None) -> str | None:
    """A number as Alpaca writes it in JSON strings (no exponent, no trailing zeros)."""
    if x is None:
        return None
    s = f"{x:.9f}".rstrip("0").rstrip(".")
    return "0" if s in ("-0", "") else s


def _num(body: dict[str, Any], key: str) -> float | None:
    v = body.get(key)
    if v is None:
        return None
    try:
        x = float(v)
    except (TypeError, ValueError):
        raise unprocessable(f"invalid {key}: {v!r}") from None
    if not math.isfinite(x):
        raise unprocessable(f"invalid {key}: {v!r}")
    return x


class Broker:
    """One simulated account. All methods run on the server's event loop, one at a time."""

    def __init__(
        self,
        store: StateStore,
        market: Market,
        *,
        slippage_bps: float = 0.0,
        cash: float = 100_000.0,
        multiplier: float = 2.0,
        on_event: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.store = store
        self.market = market
        self.slippage_bps = slippage_bps
        self.multiplier = multiplier
        self.on_event = on_event or (lambda _e: None)
        self.partial_fills = False
        self.reject_symbols: set[str] = set()
        self.counters = {"rejected_by_exchange": 0, "fills": 0, "duplicate_client_order_ids": 0}
        acct = store.get_meta("account")
        if acct is None:
            acct = {
                "id": str(uuid.uuid4()),
                "account_number": "PA" + uuid.uuid4().hex[:10].upper(),
                "created_at": iso_z(market.now()),
                "cash": cash,
                "last_equity": cash,
                "seq": 0,
            }
            store.save(meta={"account": acct})
        self.acct: dict[str, Any] = acct
        self.orders: dict[str, dict[str, Any]] = {o["id"]: o for o in store.load_orders()}
        self.by_client: dict[str, str] = {o["client_order_id"]: o["id"] for o in self.orders.values()}
        # the orders still working, in submission order (the store loads by seq): what every
        # per-order check scans
        self._working: dict[str, dict[str, Any]] = {i: o for i, o in self.orders.items() if o["status"] in WORKING}
        self.positions: dict[str, dict[str, Any]] = store.load_positions()

    @property
    def fresh(self) -> bool:
        """True while the account has never held a position or an order."""
        return not self.orders and not self.positions

    def seed_position(self, symbol: str, qty: float) -> None:
        """Hold ``qty`` of ``symbol`` (negative = short) bought outside the simulator at the last price."""
        symbol = symbol.upper()
        if not self.market.known(symbol):
            raise ValueError(f"cannot seed a position in unknown symbol {symbol!r}")
        px = self.market.price(symbol) or self.market.prev_close(symbol)
        if px is None:
            raise ValueError(f"no price for {symbol!r} to seed a position at")
        pos = {"symbol": symbol, "qty": float(qty), "avg_entry_price": px}
        self.positions[symbol] = pos
        self.store.save(positions={symbol: pos})

    # -- account & positions --------------------------------------------------------------------

    def _mark(self, symbol: str, fallback: float) -> float:
        return self.market.price(symbol) or self.market.prev_close(symbol) or fallback

    def _exposure(self) -> tuple[float, float]:
        long_mv = short_mv = 0.0
        for sym, p in self.positions.items():
            mv = p["qty"] * self._mark(sym, p["avg_entry_price"])
            if mv >= 0:
                long_mv += mv
            else:
                short_mv += mv
        return long_mv, short_mv

    def _pending_open_exposure(self) -> float:
        total = 0.0
        for o in self._working.values():
            if o.get("_opening"):
                total += o["_est_value"]
        return total

    def buying_power(self) -> float:
        long_mv, short_mv = self._exposure()
        equity = self.acct["cash"] + long_mv + short_mv
        return max(0.0, self.multiplier * equity - (long_mv - short_mv) - self._pending_open_exposure())

    def account(self) -> dict[str, Any]:
        long_mv, short_mv = self._exposure()
        cash = self.acct["cash"]
        equity = cash + long_mv + short_mv
        bp = self.buying_power()
        margin = 0.5 * (long_mv - short_mv)
        return {
            "id": self.acct["id"],
            "account_number": self.acct["account_number"],
            "status": "ACTIVE",
            "crypto_status": "INACTIVE",
            "currency": "USD",
            "buying_power": fmt(round(bp, 2)),
            "regt_buying_power": fmt(round(bp, 2)),
            "daytrading_buying_power": fmt(round(bp, 2)),
            "effective_buying_power": fmt(round(bp, 2)),
            "non_marginable_buying_power": fmt(round(max(0.0, cash), 2)),
            "options_buying_power": fmt(round(max(0.0, cash), 2)),
            "bod_dtbp": "0",
            "cash": fmt(round(cash, 2)),
            "accrued_fees": "0",
            "pending_transfer_in": "0",
            "portfolio_value": fmt(round(equity, 2)),
            "pattern_day_trader": False,
            "trading_blocked": False,
            "transfers_blocked": False,
            "account_blocked": False,
            "created_at": self.acct["created_at"],
            "trade_suspended_by_user": False,
            "multiplier": fmt(self.multiplier),
            "shorting_enabled": True,
            "equity": fmt(round(equity, 2)),
            "last_equity": fmt(round(self.acct["last_equity"], 2)),
            "long_market_value": fmt(round(long_mv, 2)),
            "short_market_value": fmt(round(short_mv, 2)),
            "position_market_value": fmt(round(long_mv - short_mv, 2)),
            "initial_margin": fmt(round(margin, 2)),
            "maintenance_margin": fmt(round(0.3 * (long_mv - short_mv), 2)),
            "last_maintenance_margin": "0",
            "sma": "0",
            "daytrade_count": 0,
            "balance_asof": self.market.now().date().isoformat(),
            "options_approved_level": 0,
            "options_trading_level": 0,
        }

    def _held(self, symbol: str, side: str) -> float:
        return sum(
            _remaining(o) for o in self._working.values()
            if o["symbol"] == symbol and o["side"] == side and not o.get("_opening")
        )

    def position_doc(self, symbol: str) -> dict[str, Any]:
        p = self.positions[symbol]
        qty, avg = p["qty"], p["avg_entry_price"]
        px = self._mark(symbol, avg)
        last = self.market.prev_close(symbol) or avg
        mv = qty * px
        cost = qty * avg
        upl = mv - cost
        side = "long" if qty > 0 else "short"
        held = self._held(symbol, "sell" if qty > 0 else "buy")
        return {
            "asset_id": asset_id(symbol),
            "symbol": symbol,
            "exchange": self.market.exchange(symbol),
            "asset_class": "us_equity",
            "asset_marginable": True,
            "qty": fmt(qty),
            "qty_available": fmt(abs(qty) - held if qty > 0 else -(abs(qty) - held)),
            "avg_entry_price": fmt(round(avg, 6)),
            "side": side,
            "market_value": fmt(round(mv, 2)),
            "cost_basis": fmt(round(cost, 2)),
            "unrealized_pl": fmt(round(upl, 2)),
            "unrealized_plpc": fmt(round(upl / abs(cost), 6) if cost else 0.0),
            "unrealized_intraday_pl": fmt(round(qty * (px - last), 2)),
            "unrealized_intraday_plpc": fmt(round((px - last) / last * (1 if qty > 0 else -1), 6)),
            "current_price": fmt(px),
            "lastday_price": fmt(last),
            "change_today": fmt(round((px - last) / last, 6)),
        }

    def list_positions(self) -> list[dict[str, Any]]:
        return [self.position_doc(s) for s in sorted(self.positions)]

    def get_position(self, symbol: str) -> dict[str, Any]:
        symbol = symbol.upper()
        if symbol not in self.positions:
            raise not_found("position does not exist")
        return self.position_doc(symbol)

    # -- orders ---------------------------------------------------------------------------------

    def _public(self, o: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in o.items() if not k.startswith("_")}

    def submit(self, body: Any) -> dict[str, Any]:
        """Validate and accept a market order; raise ApiError (and change nothing) if refused."""
        if not isinstance(body, dict):
            raise bad_request("request body format is invalid")
        symbol = body.get("symbol")
        if not isinstance(symbol, str) or not symbol:
            raise unprocessable("symbol is required")
        symbol = symbol.upper()
        if not self.market.known(symbol):
            raise unprocessable(f'asset "{symbol}" not found')
        side = body.get("side")
        if side not in ("buy", "sell"):
            raise unprocessable(f"invalid side: {side!r}")
        otype = body.get("type", body.get("order_type"))
        if otype != "market":
            raise unprocessable(f"order type {otype!r} is not supported: the simulator fills market orders only")
        tif = body.get("time_in_force")
        if tif not in TIFS:
            raise unprocessable(f"invalid time_in_force: {tif!r}")
        if body.get("order_class") not in (None, "", "simple"):
            raise unprocessable("only simple orders are supported")
        if body.get("extended_hours") in (True, "true", "True"):
            raise unprocessable("extended hours order must be DAY limit orders")
        qty, notional = _num(body, "qty"), _num(body, "notional")
        if (qty is None) == (notional is None):
            raise unprocessable("qty or notional is required, not both")
        if qty is not None and qty <= 0:
            raise unprocessable("qty must be > 0")
        if notional is not None:
            if notional <= 0:
                raise unprocessable("notional must be > 0")
            if tif != "day":
                raise unprocessable("notional orders must be DAY orders")
        cid = body.get("client_order_id")
        if cid is None:
            cid = str(uuid.uuid4())
        if not isinstance(cid, str) or not 0 < len(cid) <= 128:
            raise unprocessable("client_order_id must be a string of 1 to 128 characters")
        if cid in self.by_client:
            self.counters["duplicate_client_order_ids"] += 1
            raise unprocessable("client_order_id must be unique")
        price = self.market.price(symbol) or self.market.prev_close(symbol)
        if price is None:
            raise forbidden(f"no price available for {symbol}")
        est_qty = qty if qty is not None else notional / price  # type: ignore[operator]
        if qty is not None and abs(qty - round(qty)) > EPS and tif != "day":
            raise unprocessable("fractional orders must be DAY orders")
        pos_qty = self.positions.get(symbol, {}).get("qty", 0.0)
        reducing = (side == "sell" and pos_qty > EPS) or (side == "buy" and pos_qty < -EPS)
        if reducing:
            avail = abs(pos_qty) - self._held(symbol, side)
            if est_qty > avail + EPS:
                raise forbidden(
                    f"insufficient qty available for order (requested: {fmt(est_qty)}, available: {fmt(avail)})",
                    available=fmt(avail), existing_qty=fmt(abs(pos_qty)),
                    held_for_orders=fmt(abs(pos_qty) - avail), symbol=symbol)
        else:
            if side == "sell" and (notional is not None or abs(est_qty - round(est_qty)) > EPS):
                raise forbidden("fractional orders cannot be sold short")
            if any(o["symbol"] == symbol and o["side"] != side for o in self._working.values()):
                raise forbidden(f"potential wash trade detected. use complex orders ({symbol})")
            if est_qty * price > self.buying_power() + EPS:
                raise forbidden("insufficient buying power")
        now = iso_z(self.market.now())
        self.acct["seq"] += 1
        is_open = self.market.is_open()
        order = {
            "id": str(uuid.uuid4()),
            "client_order_id": cid,
            "created_at": now,
            "updated_at": now,
            "submitted_at": now,
            "filled_at": None,
            "expired_at": None,
            "expires_at": None,
            "canceled_at": None,
            "failed_at": None,
            "replaced_at": None,
            "replaced_by": None,
            "replaces": None,
            "asset_id": asset_id(symbol),
            "symbol": symbol,
            "asset_class": "us_equity",
            "notional": fmt(notional),
            "qty": fmt(qty),
            "filled_qty": "0",
            "filled_avg_price": None,
            "order_class": "simple",
            "order_type": "market",
            "type": "market",
            "side": side,
            "position_intent": f"{side}_to_{'close' if reducing else 'open'}",
            "time_in_force": tif,
            "limit_price": None,
            "stop_price": None,
            "status": "new" if is_open else "accepted",
            "extended_hours": False,
            "legs": None,
            "trail_percent": None,
            "trail_price": None,
            "hwm": None,
            "subtag": None,
            "source": None,
            "_seq": self.acct["seq"],
            "_opening": not reducing,
            "_est_value": est_qty * price,
            "_notional": notional,
            "_est_qty": est_qty,
            "_filled": 0.0,
            "_cost": 0.0,
        }
        self.orders[order["id"]] = order
        self.by_client[cid] = order["id"]
        self._working[order["id"]] = order
        self.store.save(meta={"account": self.acct}, orders=[order])
        self._emit("new" if is_open else "accepted", order)
        return self._public(order)

    def _emit(self, event: str, order: dict[str, Any], **extra: Any) -> None:
        msg = {"event": event, "timestamp": order["updated_at"], **extra, "order": self._public(order)}
        self.on_event(msg)

    def working(self) -> list[dict[str, Any]]:
        return list(self._working.values())

    def _settle(self, o: dict[str, Any]) -> None:
        """Forget ``o`` as working once its status is final."""
        if o["status"] not in WORKING:
            self._working.pop(o["id"], None)

    def fill_working(self) -> bool:
        """Execute working orders at the current price if the market is open; True if any remain."""
        if not self.market.is_open():
            return False
        for o in self.working():
            self._execute(o)
        return bool(self._working)

    def _execute(self, o: dict[str, Any]) -> None:
        symbol = o["symbol"]
        now = iso_z(self.market.now())
        price = self.market.price(symbol)
        if o["status"] == "accepted":
            o["status"] = "new"
            o["updated_at"] = now
            self.store.save(orders=[o])
            self._emit("new", o)
        if price is None or symbol in self.reject_symbols:
            o.update(status="rejected", failed_at=now, updated_at=now)
            self._settle(o)
            self.counters["rejected_by_exchange"] += 1
            self.store.save(orders=[o])
            self._emit("rejected", o)
            return
        side = o["side"]
        slip = self.slippage_bps / 1e4
        px = round(price * (1 + slip) if side == "buy" else price * (1 - slip), 4)
        total = o["_notional"] / px if o["_notional"] is not None else float(o["qty"])
        total = round(total, 9)
        remaining = total - o["_filled"]
        exec_qty = remaining
        if self.partial_fills and o["_filled"] == 0.0 and remaining >= 2:
            exec_qty = float(math.floor(remaining / 2))
        signed = exec_qty if side == "buy" else -exec_qty
        pos = self.positions.get(symbol)
        old = pos["qty"] if pos else 0.0
        new = round(old + signed, 9)
        if pos is None or old == 0 or (old > 0) == (signed > 0):
            avg = ((abs(old) * pos["avg_entry_price"]) if pos else 0.0) + exec_qty * px
            avg /= abs(new)
        else:
            avg = pos["avg_entry_price"]
        self.acct["cash"] -= signed * px
        pos_change: dict[str, dict[str, Any] | None]
        if abs(new) < EPS:
            self.positions.pop(symbol, None)
            pos_change = {symbol: None}
        else:
            self.positions[symbol] = {"symbol": symbol, "qty": new, "avg_entry_price": avg}
            pos_change = {symbol: self.positions[symbol]}
        o["_filled"] = round(o["_filled"] + exec_qty, 9)
        o["_cost"] += exec_qty * px
        done = o["_filled"] >= total - EPS
        o.update(
            filled_qty=fmt(o["_filled"]),
            filled_avg_price=fmt(round(o["_cost"] / o["_filled"], 6)),
            status="filled" if done else "partially_filled",
            updated_at=now,
        )
        if done:
            o["filled_at"] = now
            self._settle(o)
        self.counters["fills"] += 1
        self.store.save(meta={"account": self.acct}, orders=[o], positions=pos_change)
        self._emit("fill" if done else "partial_fill", o, execution_id=str(uuid.uuid4()), price=fmt(px),
                   qty=fmt(exec_qty), position_qty=fmt(new))

    def list_orders(
        self,
        status: str = "open",
        limit: int = 50,
        after: datetime | None = None,
        until: datetime | None = None,
        direction: str = "desc",
        symbols: list[str] | None = None,
        side: str | None = None,
    ) -> list[dict[str, Any]]:
        if status not in ("open", "closed", "all"):
            raise unprocessable(f"invalid status: {status!r}")
        if direction not in ("asc", "desc"):
            raise unprocessable(f"invalid direction: {direction!r}")
        if not 1 <= limit <= 500:
            raise unprocessable("limit must be between 1 and 500")
        if side not in (None, "buy", "sell"):
            raise unprocessable(f"invalid side: {side!r}")
        wanted = {s.upper() for s in symbols} if symbols else None
        out = []
        for o in sorted(self.orders.values(), key=lambda o: o["_seq"], reverse=direction == "desc"):
            is_open = o["status"] in OPEN_STATUSES
            if (status == "open" and not is_open) or (status == "closed" and is_open):
                continue
            if wanted is not None and o["symbol"] not in wanted:
                continue
            if side and o["side"] != side:
                continue
            created = datetime.fromisoformat(o["submitted_at"])
            if (after and created <= after) or (until and created >= until):
                continue
            out.append(self._public(o))
            if len(out) >= limit:
                break
        return out

    def get_order(self, order_id: str) -> dict[str, Any]:
        o = self.orders.get(order_id)
        if o is None:
            raise not_found("order not found")
        return self._public(o)

    def get_by_client_id(self, cid: str) -> dict[str, Any]:
        oid = self.by_client.get(cid)
        if oid is None:
            raise not_found("order not found")
        return self._public(self.orders[oid])

    def cancel(self, order_id: str) -> None:
        o = self.orders.get(order_id)
        if o is None:
            raise not_found("order not found")
        if o["status"] not in WORKING:
            raise unprocessable(f"order is not cancelable (status: {o['status']})")
        now = iso_z(self.market.now())
        o.update(status="canceled", canceled_at=now, updated_at=now)
        self._settle(o)
        self.store.save(orders=[o])
        self._emit("canceled", o)

    def cancel_all(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for o in self.working():
            try:
                self.cancel(o["id"])
                out.append({"id": o["id"], "status": 200})
            except ApiError as exc:
                out.append({"id": o["id"], "status": exc.status, "body": exc.body()})
        return out

    def close_position(self, symbol: str, qty: float | None = None, percentage: float | None = None,
                       client_order_id: str | None = None) -> dict[str, Any]:
        symbol = symbol.upper()
        pos = self.positions.get(symbol)
        if pos is None:
            raise not_found("position not found")
        amount = abs(pos["qty"])
        if qty is not None and percentage is not None:
            raise unprocessable("only one of qty or percentage may be given")
        if qty is not None:
            if not 0 < qty <= amount + EPS:
                raise unprocessable(f"qty must be > 0 and <= {fmt(amount)}")
            amount = qty
        elif percentage is not None:
            if not 0 < percentage <= 100:
                raise unprocessable("percentage must be > 0 and <= 100")
            amount = round(amount * percentage / 100, 9)
        side = "sell" if pos["qty"] > 0 else "buy"
        body: dict[str, Any] = {"symbol": symbol, "qty": amount, "side": side, "type": "market",
                                "time_in_force": "day"}
        if client_order_id:
            body["client_order_id"] = client_order_id
        return self.submit(body)

    def close_all(self, cancel_orders: bool) -> list[dict[str, Any]]:
        if cancel_orders:
            self.cancel_all()
        out: list[dict[str, Any]] = []
        for sym in sorted(self.positions):
            try:
                order = self.close_position(sym)
                out.append({"symbol": sym, "status": 200, "order_id": order["id"], "body": order})
            except ApiError as exc:
                out.append({"symbol": sym, "status": exc.status, "body": exc.body()})
        return out

    def roll_day(self) -> None:
        """At a session close: remember the equity the next session's P&L is measured from."""
        long_mv, short_mv = self._exposure()
        self.acct["last_equity"] = self.acct["cash"] + long_mv + short_mv
        self.store.save(meta={"account": self.acct})


def _remaining(o: dict[str, Any]) -> float:
    total = float(o["qty"]) if o["qty"] is not None else o["_est_qty"]
    return max(0.0, total - o["_filled"])
