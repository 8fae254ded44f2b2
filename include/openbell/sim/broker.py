"""The simulated broker: account, market orders, positions and trade updates, persisted on every change.

Market orders fill at the market's current price plus slippage while the session is open; submitted
while it is closed they are accepted and queued for the next open, as Alpaca does for day orders. A limit
order fills once the current price (the open of the minute in progress) reaches its limit, at that price or
the limit, whichever is better for it; until then it stays working, checked at every minute.
Orders for a halted symbol are held until it trades again; day orders still working at the close
expire. Splits adjust the positions held across them at their session's open.
The account and positions are read in :mod:`~openbell.sim.accounting`, orders are validated and
managed in :mod:`~openbell.sim.ordering`.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from openbell.sim.accounting import EPS, Market, asset_id, fmt
from openbell.sim.ordering import OPEN_STATUSES, WORKING, AssetFlags, OrderDesk
from openbell.sim.playback import iso_z
from openbell.sim.store import StateStore

__all__ = ["OPEN_STATUSES", "WORKING", "AssetFlags", "Broker", "Market", "asset_id", "fmt"]


class Broker(OrderDesk):
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
        trading_blocked: bool = False,
        assets: AssetFlags | None = None,
    ) -> None:
        self.store = store
        self.market = market
        self.slippage_bps = slippage_bps
        self.multiplier = multiplier
        self.on_event = on_event or (lambda _e: None)
        self.partial_fills = False
        self.reject_symbols: set[str] = set()
        self.trading_blocked = trading_blocked
        assets = assets or AssetFlags()
        self.not_tradable = set(assets.not_tradable)
        self.not_fractionable = set(assets.not_fractionable)
        self.not_shortable = set(assets.not_shortable)
        self.hard_to_borrow = set(assets.hard_to_borrow)
        self.counters = {"rejected_by_exchange": 0, "fills": 0, "duplicate_client_order_ids": 0, "expired": 0}
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
        """Hold ``qty`` of ``symbol`` (negative = short, fractions allowed) bought outside the simulator at the
        last price."""
        symbol = symbol.upper()
        if not self.market.known(symbol):
            raise ValueError(f"cannot seed a position in unknown symbol {symbol!r}")
        px = self.market.price(symbol) or self.market.prev_close(symbol)
        if px is None:
            raise ValueError(f"no price for {symbol!r} to seed a position at")
        pos = {"symbol": symbol, "qty": float(qty), "avg_entry_price": px}
        self.positions[symbol] = pos
        self.store.save(positions={symbol: pos})

    # -- fills ----------------------------------------------------------------------------------

    def fill_working(self) -> bool:
        """Execute working orders at the current price if the market is open; True if any fillable remain
        (orders for halted symbols wait for the resumption)."""
        if not self.market.is_open():
            return False
        for o in self.working():
            self._execute(o)
        return any(not self.market.halted(o["symbol"]) and o.get("_limit") is None for o in self._working.values())

    def _execute(self, o: dict[str, Any]) -> None:
        symbol = o["symbol"]
        now = iso_z(self.market.now())
        price = self.market.price(symbol)
        if o["status"] == "accepted":
            o["status"] = "new"
            o["updated_at"] = now
            self.store.save(orders=[o])
            self._emit("new", o)
        if self.market.halted(symbol):
            return
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
        limit = o.get("_limit")
        if limit is not None:
            if (side == "buy" and price > limit) or (side == "sell" and price < limit):
                return  # not marketable: it keeps working
            px = min(px, limit) if side == "buy" else max(px, limit)
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

    # -- the day's end and corporate actions ------------------------------------------------------

    def expire_day_orders(self, close: datetime) -> int:
        """At a session's close: day orders submitted before it and still working expire; how many did."""
        n = 0
        for o in self.working():
            if o["time_in_force"] == "day" and datetime.fromisoformat(o["submitted_at"]) < close:
                self._finish(o, "expired", "expired")
                n += 1
        self.counters["expired"] += n
        return n

    def roll_day(self) -> None:
        """At a session close: remember the equity the next session's P&L is measured from."""
        long_mv, short_mv = self._exposure()
        self.acct["last_equity"] = self.acct["cash"] + long_mv + short_mv
        self.store.save(meta={"account": self.acct})

    def splits_done(self) -> list[str]:
        """Keys of the splits already applied to this account."""
        return list(self.acct.get("splits", []))

    def apply_split(self, key: str, symbol: str, ratio: float, adjust: bool = True) -> None:
        """Apply a split once per account: working orders in the symbol are canceled and a position's quantity
        is multiplied by ``ratio``, its average price divided by it (``adjust=False`` only records it)."""
        if key in self.acct.setdefault("splits", []):
            return
        change: dict[str, dict[str, Any] | None] = {}
        if adjust:
            for o in self.working():
                if o["symbol"] == symbol:
                    self._finish(o, "canceled", "canceled")
            pos = self.positions.get(symbol)
            if pos is not None:
                pos = {"symbol": symbol, "qty": round(pos["qty"] * ratio, 9),
                       "avg_entry_price": pos["avg_entry_price"] / ratio}
                self.positions[symbol] = pos
                change[symbol] = pos
        self.acct["splits"].append(key)
        self.store.save(meta={"account": self.acct}, positions=change)
