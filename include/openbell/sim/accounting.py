"""The broker's books as clients read them: the account (without the pattern-day-trader fields Alpaca
dropped in July 2026), buying power and positions, valued at the market's current prices."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

from openbell.sim.errors import not_found
from openbell.sim.store import StateStore

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
    def halted(self, symbol: str) -> bool: ...


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


def remaining(o: dict[str, Any]) -> float:
    """Shares of an order not filled yet (estimated for a notional order)."""
    total = float(o["qty"]) if o["qty"] is not None else o["_est_qty"]
    return max(0.0, total - o["_filled"])


class BrokerState:
    """The state every part of the broker shares."""

    store: StateStore
    market: Market
    multiplier: float
    on_event: Callable[[dict[str, Any]], None]
    acct: dict[str, Any]
    orders: dict[str, dict[str, Any]]
    by_client: dict[str, str]
    _working: dict[str, dict[str, Any]]
    positions: dict[str, dict[str, Any]]
    counters: dict[str, int]
    trading_blocked: bool


class Accounting(BrokerState):
    """Account, buying power and position documents."""

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
        return sum(o["_est_value"] for o in self._working.values() if o.get("_opening"))

    def buying_power(self) -> float:
        long_mv, short_mv = self._exposure()
        equity = self.acct["cash"] + long_mv + short_mv
        return max(0.0, self.multiplier * equity - (long_mv - short_mv) - self._pending_open_exposure())

    def account(self) -> dict[str, Any]:
        long_mv, short_mv = self._exposure()
        cash = self.acct["cash"]
        equity = cash + long_mv + short_mv
        bp = fmt(round(self.buying_power(), 2))
        margin = 0.5 * (long_mv - short_mv)
        return {
            "id": self.acct["id"],
            "account_number": self.acct["account_number"],
            "status": "ACTIVE",
            "crypto_status": "INACTIVE",
            "currency": "USD",
            "buying_power": bp,
            "regt_buying_power": bp,
            "effective_buying_power": bp,
            "non_marginable_buying_power": fmt(round(max(0.0, cash), 2)),
            "options_buying_power": fmt(round(max(0.0, cash), 2)),
            "cash": fmt(round(cash, 2)),
            "accrued_fees": "0",
            "pending_transfer_in": "0",
            "portfolio_value": fmt(round(equity, 2)),
            "trading_blocked": self.trading_blocked,
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
            "balance_asof": self.market.now().date().isoformat(),
            "options_approved_level": 0,
            "options_trading_level": 0,
        }

    def _held(self, symbol: str, side: str) -> float:
        return sum(
            remaining(o) for o in self._working.values()
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
