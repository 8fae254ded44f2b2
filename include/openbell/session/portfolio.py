"""The live loop's in-memory view of the account: positions, working orders, cash, last prices."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class OrderIntent:
    """A market order the loop wants to send."""

    symbol: str
    side: str  # "buy" | "sell"
    qty: float
    target_weight: float


@dataclass
class Working:
    symbol: str
    signed_qty: float  # what is still expected to fill, signed


@dataclass
class Portfolio:
    """Broker-fed state; mutated only on the event loop's thread."""

    cash: float = 0.0
    positions: dict[str, float] = field(default_factory=dict)
    prices: dict[str, float] = field(default_factory=dict)
    working: dict[str, Working] = field(default_factory=dict)
    executions: set[str] = field(default_factory=set)

    def equity(self) -> float:
        return self.cash + sum(q * self.prices.get(s, 0.0) for s, q in self.positions.items())

    def gross_exposure(self) -> float:
        return sum(abs(q) * self.prices.get(s, 0.0) for s, q in self.positions.items())

    def expected(self, symbol: str) -> float:
        """Position plus what working orders will add."""
        return self.positions.get(symbol, 0.0) + sum(
            w.signed_qty for w in self.working.values() if w.symbol == symbol
        )

    def intents(
        self, weights: Mapping[str, float], universe: Iterable[str], min_notional: float
    ) -> list[OrderIntent]:
        """Whole-share market orders moving each universe symbol to its target weight, sells first.

        Symbols outside the universe (e.g. adopted positions) are left for the liquidation.
        """
        equity = self.equity()
        out: list[OrderIntent] = []
        for symbol in sorted(universe):
            price = self.prices.get(symbol)
            if not price or price <= 0 or not math.isfinite(price):
                continue
            weight = float(weights.get(symbol, 0.0))
            target = math.trunc(weight * equity / price) if equity > 0 else 0
            diff = target - self.expected(symbol)
            if abs(diff) * price < min_notional:
                continue
            qty = math.floor(abs(diff))
            if qty <= 0:
                continue
            out.append(OrderIntent(symbol, "buy" if diff > 0 else "sell", float(qty), weight))
        out.sort(key=lambda o: o.side != "sell")
        return out

    def add_working(self, client_order_id: str, intent: OrderIntent) -> None:
        signed = intent.qty if intent.side == "buy" else -intent.qty
        self.working[client_order_id] = Working(intent.symbol, signed)

    def order_done(self, client_order_id: str) -> None:
        self.working.pop(client_order_id, None)

    def on_fill(
        self,
        execution_id: str,
        client_order_id: str,
        symbol: str,
        side: str,
        qty: float,
        price: float,
        position_qty: float | None,
        remaining: float,
        final: bool,
    ) -> bool:
        """Apply a fill once; returns False for a replayed execution."""
        if execution_id in self.executions:
            return False
        self.executions.add(execution_id)
        signed = qty if side == "buy" else -qty
        self.cash -= signed * price
        self.positions[symbol] = (
            position_qty if position_qty is not None else self.positions.get(symbol, 0) + signed
        )
        self.prices.setdefault(symbol, price)
        w = self.working.get(client_order_id)
        if w is not None:
            if final or remaining <= 0:
                self.working.pop(client_order_id)
            else:
                w.signed_qty = remaining if side == "buy" else -remaining
        return True
