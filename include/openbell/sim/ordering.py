"""The broker's order desk: market and limit orders validated as Alpaca validates them, with Alpaca's status
codes and messages, and the order queries, cancels and position closes built on them.

Fractional quantities (up to 9 decimals) and notional orders (dollars, 2 decimals) are DAY orders of a
fractionable asset; a notional order is a market order of at least $1. A limit price takes whole cents at or
above $1 and up to 4 decimals below. A sell that opens or adds to a short needs a whole quantity and an asset
that is both shortable and easy to borrow. Every request is fully validated before anything changes, so a
refused request changes nothing.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from openbell.sim.accounting import EPS, Accounting, asset_id, fmt
from openbell.sim.errors import ApiError, bad_request, forbidden, not_found, unprocessable
from openbell.sim.playback import iso_z

WORKING = ("accepted", "new", "pending_new", "partially_filled")
OPEN_STATUSES = (*WORKING, "held", "pending_cancel", "pending_replace", "accepted_for_bidding")
TIFS = ("day", "gtc", "ioc", "fok", "opg", "cls")
SHORT_BUFFER = 1.03  # a market short is valued 3% above the current price for buying power
TRADING_BLOCKED = "account is not authorized to trade"
NOT_FRACTIONABLE = "requested asset is not fractionable"
NOT_SHORTABLE = "asset {} cannot be sold short"
MIN_NOTIONAL = 1.0  # dollars: the least notional order Alpaca takes (403 "cost basis must be >= 1")
SUB_PENNY = "invalid limit_price {}. sub-penny increment does not fulfill minimum pricing criteria"


@dataclass(frozen=True)
class AssetFlags:
    """Symbols whose asset is not tradable, not fractionable, not shortable or hard to borrow."""

    not_tradable: Iterable[str] = ()
    not_fractionable: Iterable[str] = ()
    not_shortable: Iterable[str] = ()
    hard_to_borrow: Iterable[str] = ()


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


def _limit_price(body: dict[str, Any], otype: str) -> float | None:
    """The limit price of a limit order (None for a market order), refused as Alpaca refuses it."""
    limit = _num(body, "limit_price")
    if otype == "market":
        if limit is not None:
            raise unprocessable("limit_price is not allowed for market orders")
        return None
    if limit is None:
        raise unprocessable("limit_price is required for limit orders")
    if limit <= 0:
        raise unprocessable("limit_price must be > 0")
    places = 2 if limit >= 1.0 else 4
    if abs(limit - round(limit, places)) > 1e-9:
        raise unprocessable(SUB_PENNY.format(body.get("limit_price")))
    return round(limit, places)


class OrderDesk(Accounting):
    """Order submission, queries, cancels and position closes."""

    not_tradable: set[str]
    not_fractionable: set[str]
    not_shortable: set[str]
    hard_to_borrow: set[str]

    def _public(self, o: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in o.items() if not k.startswith("_")}

    def _emit(self, event: str, order: dict[str, Any], **extra: Any) -> None:
        self.on_event({"event": event, "timestamp": order["updated_at"], **extra, "order": self._public(order)})

    def working(self) -> list[dict[str, Any]]:
        return list(self._working.values())

    def _settle(self, o: dict[str, Any]) -> None:
        """Forget ``o`` as working once its status is final."""
        if o["status"] not in WORKING:
            self._working.pop(o["id"], None)

    def _parse(self, body: Any) -> tuple[str, str, str, float | None, float | None, str, float | None]:
        """(symbol, side, time in force, qty, notional, client order id, limit price) of a valid order body."""
        if not isinstance(body, dict):
            raise bad_request("request body format is invalid")
        if self.trading_blocked:
            raise forbidden(TRADING_BLOCKED)
        symbol = body.get("symbol")
        if not isinstance(symbol, str) or not symbol:
            raise unprocessable("symbol is required")
        symbol = symbol.upper()
        if not self.market.known(symbol):
            raise unprocessable(f'asset "{symbol}" not found')
        if symbol in self.not_tradable:
            raise unprocessable(f"asset {symbol} is not tradable")
        side = body.get("side")
        if side not in ("buy", "sell"):
            raise unprocessable(f"invalid side: {side!r}")
        otype = body.get("type", body.get("order_type"))
        if otype not in ("market", "limit"):
            raise unprocessable(f"order type {otype!r} is not supported: the simulator fills market and limit "
                                "orders only")
        limit = _limit_price(body, otype)
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
            if otype != "market":
                raise unprocessable("notional orders must be market orders")
            if notional < MIN_NOTIONAL:
                raise forbidden(f"cost basis must be >= {MIN_NOTIONAL:g}")
        if qty is not None and abs(qty - round(qty)) > EPS and tif != "day":
            raise unprocessable("fractional orders must be DAY orders")
        cid = body.get("client_order_id")
        if cid is None:
            cid = str(uuid.uuid4())
        if not isinstance(cid, str) or not 0 < len(cid) <= 128:
            raise unprocessable("client_order_id must be a string of 1 to 128 characters")
        if cid in self.by_client:
            self.counters["duplicate_client_order_ids"] += 1
            raise unprocessable("client_order_id must be unique")
        return symbol, side, tif, qty, notional, cid, limit

    def submit(self, body: Any) -> dict[str, Any]:
        """Validate and accept a market or limit order; raise ApiError (and change nothing) if refused."""
        symbol, side, tif, qty, notional, cid, limit = self._parse(body)
        price = self.market.price(symbol) or self.market.prev_close(symbol)
        if price is None:
            raise forbidden(f"no price available for {symbol}")
        est_qty = qty if qty is not None else notional / price  # type: ignore[operator]
        fractional = notional is not None or abs(est_qty - round(est_qty)) > EPS
        pos_qty = self.positions.get(symbol, {}).get("qty", 0.0)
        reducing = (side == "sell" and pos_qty > EPS) or (side == "buy" and pos_qty < -EPS)
        if fractional and not reducing and symbol in self.not_fractionable:
            raise unprocessable(NOT_FRACTIONABLE)
        if any(o["symbol"] == symbol and o["side"] != side for o in self._working.values()):
            raise forbidden("potential wash trade detected. use complex orders")
        value = est_qty * (price if limit is None or side == "sell" else limit)
        if reducing:
            avail = abs(pos_qty) - self._held(symbol, side)
            if est_qty > avail + EPS:
                raise forbidden(
                    f"insufficient qty available for order (requested: {fmt(est_qty)}, available: {fmt(avail)})",
                    available=fmt(avail), existing_qty=fmt(abs(pos_qty)),
                    held_for_orders=fmt(abs(pos_qty) - avail), symbol=symbol)
        else:
            if side == "sell" and fractional:
                raise forbidden("fractional orders are not allowed to short")
            if side == "sell" and (symbol in self.not_shortable or symbol in self.hard_to_borrow):
                raise unprocessable(NOT_SHORTABLE.format(symbol))
            if side == "sell":
                value = est_qty * max(limit or 0.0, price * SHORT_BUFFER)
            available = self.buying_power()
            if value > available + EPS:  # Alpaca's body says both figures
                raise forbidden("insufficient buying power", buying_power=fmt(round(available, 2)),
                                cost_basis=fmt(round(value, 2)))
        return self._accept(symbol, side, tif, qty, notional, cid, est_qty, value, reducing, limit)

    def _accept(self, symbol: str, side: str, tif: str, qty: float | None, notional: float | None, cid: str,
                est_qty: float, value: float, reducing: bool, limit: float | None) -> dict[str, Any]:
        now = iso_z(self.market.now())
        self.acct["seq"] += 1
        is_open = self.market.is_open()
        otype = "market" if limit is None else "limit"
        order = {
            "id": str(uuid.uuid4()), "client_order_id": cid,
            "created_at": now, "updated_at": now, "submitted_at": now, "filled_at": None, "expired_at": None,
            "expires_at": None, "canceled_at": None, "failed_at": None,
            "replaced_at": None, "replaced_by": None, "replaces": None,
            "asset_id": asset_id(symbol), "symbol": symbol, "asset_class": "us_equity",
            "notional": fmt(notional), "qty": fmt(qty), "filled_qty": "0", "filled_avg_price": None,
            "order_class": "simple", "order_type": otype, "type": otype, "side": side,
            "position_intent": f"{side}_to_{'close' if reducing else 'open'}", "time_in_force": tif,
            "limit_price": fmt(limit), "stop_price": None, "status": "new" if is_open else "accepted",
            "extended_hours": False, "legs": None, "trail_percent": None, "trail_price": None, "hwm": None,
            "subtag": None, "source": None,
            "_seq": self.acct["seq"], "_opening": not reducing, "_est_value": value, "_notional": notional,
            "_est_qty": est_qty, "_filled": 0.0, "_cost": 0.0, "_limit": limit,
        }
        self.orders[order["id"]] = order
        self.by_client[cid] = order["id"]
        self._working[order["id"]] = order
        self.store.save(meta={"account": self.acct}, orders=[order])
        self._emit("new" if is_open else "accepted", order)
        return self._public(order)

    def list_orders(self, status: str = "open", limit: int = 50, after: datetime | None = None,
                    until: datetime | None = None, direction: str = "desc", symbols: list[str] | None = None,
                    side: str | None = None) -> list[dict[str, Any]]:
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

    def _finish(self, o: dict[str, Any], status: str, stamp: str) -> None:
        """End a working order as ``status`` (canceled, expired), stamping ``<stamp>_at``, and announce it."""
        now = iso_z(self.market.now())
        o.update({"status": status, f"{stamp}_at": now, "updated_at": now})
        self._settle(o)
        self.store.save(orders=[o])
        self._emit(status, o)

    def cancel(self, order_id: str) -> None:
        o = self.orders.get(order_id)
        if o is None:
            raise not_found("order not found")
        if o["status"] not in WORKING:
            raise unprocessable(f"order is not cancelable (status: {o['status']})")
        self._finish(o, "canceled", "canceled")

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
