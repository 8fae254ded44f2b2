"""The live loop's in-memory view of the account: positions, working orders, cash, last prices."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from openbell.policy import OrderIntent, OrderPolicy, working_sides

EPS = 1e-9


@dataclass
class Working:
    """An order sent and not final: what is still expected to fill (signed) and the decision that sent it
    (-2: not one of ours, or not known)."""

    symbol: str
    signed_qty: float
    seq: int = -2

    @property
    def side(self) -> str:
        return "buy" if self.signed_qty > 0 else "sell"


@dataclass(frozen=True)
class Fill:
    """One execution of an order as the trade stream reported it: ``qty`` at ``price``, the position after it
    (None: not said), what the order still has to fill (None: not known, a notional order), whether the order
    is final, and its cumulative filled quantity (None: not said)."""

    execution_id: str
    client_order_id: str
    symbol: str
    side: str
    qty: float
    price: float
    position_qty: float | None = None
    remaining: float | None = 0.0
    final: bool = True
    cum_filled: float | None = None


@dataclass
class Portfolio:
    """Broker-fed state; mutated only on the event loop's thread.

    ``filled`` holds, per order, the quantity whose fills have been applied and ``reported`` the
    largest cumulative filled quantity the broker reported. A fill is applied only for the part
    that keeps ``filled`` within ``reported``, so a fill replayed after the same quantity was
    recovered by polling is not counted twice (the rule of :mod:`openbell.broker.updates`).
    """

    cash: float = 0.0
    positions: dict[str, float] = field(default_factory=dict)
    prices: dict[str, float] = field(default_factory=dict)
    working: dict[str, Working] = field(default_factory=dict)
    executions: set[str] = field(default_factory=set)
    filled: dict[str, float] = field(default_factory=dict)
    reported: dict[str, float] = field(default_factory=dict)
    # the broker's buying power beyond the cash, less the buys working when it said so; None: not known
    margin: float | None = None
    # fills applied and orders added so far: a broker snapshot read across a change is stale
    changes: int = 0

    def equity(self) -> float:
        return self.cash + sum(q * self.prices.get(s, 0.0) for s, q in self.positions.items())

    def gross_exposure(self) -> float:
        return sum(abs(q) * self.prices.get(s, 0.0) for s, q in self.positions.items())

    def expected(self, symbol: str) -> float:
        """Position plus what working orders will add."""
        return self.positions.get(symbol, 0.0) + sum(
            w.signed_qty for w in self.working.values() if w.symbol == symbol
        )

    def pending_buys(self) -> float:
        """What the working buy orders will cost at the last prices."""
        return sum(w.signed_qty * self.prices.get(w.symbol, 0.0) for w in self.working.values() if w.signed_qty > 0)

    def set_buying_power(self, buying_power: float | None) -> None:
        """The broker's buying power now (None: it did not say): kept relative to the cash and the buys
        working, so fills, syncs and new orders move :meth:`buying_power` without asking the broker."""
        if buying_power is not None:
            self.margin = buying_power - self.cash + self.pending_buys()

    def buying_power(self) -> float | None:
        """The buying power left for new buys (the broker's last word moved by what happened since); None
        until the broker has said it."""
        if self.margin is None:
            return None
        return self.margin + self.cash - self.pending_buys()

    def working_against(self, symbol: str, side: str) -> bool:
        """True while an order on the other side of ``side`` is working in ``symbol``."""
        return any(w.symbol == symbol and w.side != side for w in self.working.values())

    def intents(
        self,
        weights: Mapping[str, float],
        universe: Iterable[str],
        min_notional: float,
        deferred: list[str] | None = None,
        *,
        policy: OrderPolicy | None = None,
    ) -> list[OrderIntent]:
        """Whole-share market orders moving each universe symbol to its target weight, sells first
        (:class:`openbell.policy.OrderPolicy`).

        Symbols outside the universe (e.g. adopted positions) are left for the liquidation. A symbol
        with a working order on the other side gets no order (the broker would refuse it as a
        potential wash trade): it is appended to ``deferred`` and decided again on the next minute.
        ``policy`` (default: the rules with ``min_notional``) supplies the rules; its pre-trade limits are
        applied by the send gate, after the buying power fit.
        """
        sides = working_sides((w.symbol, w.signed_qty) for w in self.working.values())
        held = {s: self.expected(s) for s in {*self.positions, *sides}}
        rules = policy if policy is not None else OrderPolicy(min_notional=min_notional)
        out = rules.decide(weights, self.equity(), self.prices, held, sides, universe)
        if deferred is not None:
            deferred.extend(out.deferred)
        return list(out.intents)

    def add_working(self, client_order_id: str, intent: OrderIntent, seq: int) -> None:
        """An order decision ``seq`` sends now."""
        signed = intent.qty if intent.side == "buy" else -intent.qty
        self.working[client_order_id] = Working(intent.symbol, signed, seq)
        self.changes += 1
        self.filled.setdefault(client_order_id, 0.0)

    def adopt_working(self, client_order_id: str, symbol: str, side: str, qty: float, filled: float,
                      seq: int = -2) -> None:
        """An order already at the broker (an earlier attempt's, sent by decision ``seq``): ``qty`` ordered,
        ``filled`` done."""
        remaining = max(0.0, qty - filled)
        if remaining > EPS:
            self.working[client_order_id] = Working(symbol, remaining if side == "buy" else -remaining, seq)
        self.filled[client_order_id] = self.reported[client_order_id] = filled

    def order_done(self, client_order_id: str) -> None:
        self.working.pop(client_order_id, None)

    def shrink(self, client_order_id: str, filled: float) -> None:
        """A working order whose quantity the broker does not say (a notional one) filled ``filled`` more: its
        estimate shrinks by as much, never below a trace, so it counts as working on its side until final."""
        w = self.working.get(client_order_id)
        if w is not None:
            left = max(abs(w.signed_qty) - filled, EPS)
            w.signed_qty = left if w.signed_qty > 0 else -left

    def stale(self, seq: int) -> list[str]:
        """The working orders sent two decisions or more before decision ``seq``: the broker is asked for them."""
        return [c for c, w in self.working.items() if seq - w.seq >= 2]

    def _apply(self, client_order_id: str, qty: float, cum_filled: float | None) -> float:
        """The part of a fill of ``qty`` not yet applied, given the order's cumulative filled qty."""
        done = self.filled.get(client_order_id, 0.0)
        applied = qty
        if cum_filled is not None:
            top = self.reported[client_order_id] = max(self.reported.get(client_order_id, 0.0), cum_filled)
            applied = min(qty, top - done)
        if applied <= EPS:
            return 0.0
        self.changes += 1
        self.filled[client_order_id] = done + applied
        return applied

    def on_fill(self, fill: Fill) -> bool:
        """Apply a fill once; returns False for a replayed execution or quantity already applied."""
        if fill.execution_id in self.executions:
            return False
        self.executions.add(fill.execution_id)
        w = self.working.get(fill.client_order_id)
        if w is not None:
            if fill.final or (fill.remaining is not None and fill.remaining <= 0):
                self.working.pop(fill.client_order_id)
            elif fill.remaining is not None:
                w.signed_qty = fill.remaining if fill.side == "buy" else -fill.remaining
        applied = self._apply(fill.client_order_id, fill.qty, fill.cum_filled)
        if applied <= 0:
            return False
        if fill.remaining is None:
            self.shrink(fill.client_order_id, applied)
        signed = applied if fill.side == "buy" else -applied
        self.cash -= signed * fill.price
        held = fill.position_qty
        self.positions[fill.symbol] = held if held is not None else self.positions.get(fill.symbol, 0) + signed
        self.prices.setdefault(fill.symbol, fill.price)
        return True

    def recover(
        self, client_order_id: str, symbol: str, side: str, cum_filled: float, avg_price: float
    ) -> float:
        """Apply what an order's cumulative ``cum_filled`` adds beyond the fills seen (at the order's
        average price; the next broker sync sets the cash exactly); returns the quantity applied."""
        done = self.filled.get(client_order_id, 0.0)
        self.reported[client_order_id] = max(self.reported.get(client_order_id, 0.0), cum_filled)
        gap = cum_filled - done
        if gap <= EPS:
            return 0.0
        self.filled[client_order_id] = cum_filled
        self.changes += 1
        signed = gap if side == "buy" else -gap
        self.cash -= signed * avg_price
        self.positions[symbol] = self.positions.get(symbol, 0.0) + signed
        self.prices.setdefault(symbol, avg_price)
        return gap
