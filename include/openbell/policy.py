"""The order policy: risk-limited target weights in, market order intents out.

One set of rules for live trading, the share-level backtest and the liquidation: whole shares
(``trunc(weight * equity / price)``), no order worth less than ``min_notional``, no trade for a weight
change under the rebalance ``band``, sells before buys, and no order against an opposite-side order still
working in the symbol (the broker would refuse it as a potential wash trade; the symbol is deferred to
the next decision). Every intent is sent as a DAY market order. Pure: no I/O, no clock, no state.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, replace

DEFERRED_NOTE = "{}: order deferred, an opposite-side order is working"


@dataclass(frozen=True)
class OrderIntent:
    """A market order the loop wants to send."""

    symbol: str
    side: str  # "buy" | "sell"
    qty: float
    target_weight: float


@dataclass(frozen=True)
class Decision:
    """What one decision sends (``intents``), defers to the next one, holds back, and why."""

    intents: tuple[OrderIntent, ...] = ()
    deferred: tuple[str, ...] = ()
    held: tuple[OrderIntent, ...] = ()
    notes: tuple[str, ...] = ()

    def hold(self, reason: str) -> Decision:
        """The same decision with its orders held back (not sent) because of ``reason``."""
        if not self.intents:
            return self
        note = f"{len(self.intents)} order(s) held: {reason}"
        return replace(self, intents=(), held=self.held + self.intents, notes=(*self.notes, note))


def working_sides(orders: Iterable[tuple[str, float]]) -> dict[str, set[str]]:
    """Symbol -> sides of its working orders, from (symbol, signed quantity still expected to fill)."""
    sides: dict[str, set[str]] = {}
    for symbol, signed_qty in orders:
        sides.setdefault(symbol, set()).add("buy" if signed_qty > 0 else "sell")
    return sides


def _finite(x: object, low: float) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) and x >= low


@dataclass(frozen=True)
class OrderPolicy:
    """Settings of the order rules; ``band`` 0 trades every change worth ``min_notional``."""

    min_notional: float = 100.0
    band: float = 0.0  # minimum |target weight - current weight| worth trading
    whole_shares: bool = True
    sells_first: bool = True

    def __post_init__(self) -> None:
        if not _finite(self.min_notional, 0.0):
            raise ValueError(f"min_notional must be a finite number >= 0, got {self.min_notional!r}")
        if not _finite(self.band, 0.0) or self.band > 1:
            raise ValueError(f"band must be a number in [0, 1], got {self.band!r}")
        for name in ("whole_shares", "sells_first"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be a bool, got {getattr(self, name)!r}")

    def decide(
        self,
        weights: Mapping[str, float],
        equity: float,
        prices: Mapping[str, float],
        holdings: Mapping[str, float],
        working: Mapping[str, Collection[str]] | None = None,
        universe: Iterable[str] | None = None,
        *,
        hold: str | None = None,
    ) -> Decision:
        """Orders moving each ``universe`` symbol (default: those of ``weights``) to its target weight.

        ``holdings`` is each symbol's position plus what its working orders will add (missing: 0);
        ``working`` the sides of the orders working per symbol (see :func:`working_sides`). A symbol
        without a positive finite price is skipped; symbols outside the universe (e.g. adopted positions)
        are left for the liquidation. ``hold`` (the session is liquidating, the cut-off has passed) keeps
        the orders from leaving: they come back as ``held`` with a note.
        """
        out: list[OrderIntent] = []
        deferred: list[str] = []
        for symbol in sorted(weights if universe is None else universe):
            price = prices.get(symbol)
            if not price or price <= 0 or not math.isfinite(price):
                continue
            weight = float(weights.get(symbol, 0.0))
            current = holdings.get(symbol, 0.0)
            if self.whole_shares:
                target: float = math.trunc(weight * equity / price) if equity > 0 else 0
            else:
                target = weight * equity / price if equity > 0 else 0.0
            diff = target - current
            if abs(diff) * price < self.min_notional:
                continue
            if self.band and equity > 0 and abs(weight - current * price / equity) < self.band:
                continue
            qty = math.floor(abs(diff)) if self.whole_shares else abs(diff)
            if qty <= 0:
                continue
            side = "buy" if diff > 0 else "sell"
            if working and any(s != side for s in working.get(symbol, ())):
                deferred.append(symbol)
                continue
            out.append(OrderIntent(symbol, side, float(qty), weight))
        if self.sells_first:
            out.sort(key=lambda o: o.side != "sell")
        decision = Decision(tuple(out), tuple(deferred), (), tuple(DEFERRED_NOTE.format(s) for s in deferred))
        return decision if hold is None else decision.hold(hold)

    def close_all(self, holdings: Mapping[str, float]) -> tuple[OrderIntent, ...]:
        """Orders closing every position in full (no minimum, no band: the liquidation), sells first."""
        out = [
            OrderIntent(symbol, "sell" if qty > 0 else "buy", float(abs(qty)), 0.0)
            for symbol, qty in sorted(holdings.items())
            if qty and math.isfinite(qty)
        ]
        if self.sells_first:
            out.sort(key=lambda o: o.side != "sell")
        return tuple(out)
