"""The order policy: risk-limited target weights in, order intents out.

One set of rules for live trading, the share-level backtest and the liquidation: whole shares
(``trunc(weight * equity / price)``; fractions of up to 9 decimals for the symbols in ``fractional``, the
fractionable assets of a run that allows fractions, a short always whole shares), a position never carried
through zero by one order (the broker refuses it: the close goes first, the new side at the next decision),
no order worth less than ``min_notional``, no trade for a weight
change under the rebalance ``band``, sells before buys, no order against an opposite-side order still
working in the symbol (the broker would refuse it as a potential wash trade; the symbol is deferred to
the next decision), and buys scaled down together to the buying power left (:meth:`OrderPolicy.fit`).
Every intent is sent as a DAY order: a market order, or with ``order_type`` "limit" a marketable limit at the
decided price x (1 +/- ``limit_collar``) (buys above, sells below; whole cents, 4 decimals under $1). With
``order_type`` "notional" a buy that opens or adds to a long of a ``fractional`` symbol is a market order for
dollars (:func:`notional_buy`: its quantity x the decided price, cut to cents; none under Alpaca's $1), its
``qty`` the shares those dollars buy at that price; sells, covers and whole-share symbols keep a quantity. The
liquidation's closes are market orders. Pure: no I/O, no clock, no state.

Pre-trade limits (:class:`OrderLimits`, checked by the send gate) refuse an order outright, never resize
it: its notional, the position it would leave, the orders sent in the last minute and the day, and a
price collar. A market order has no limit price; its reference price is the price it was sized at (the
decided minute's close), and the collar compares it with the last trade price seen (the close of the
newest bar accepted from the stream or a refill, which may belong to a later minute). An order sized on a
price the market has left behind is refused rather than sent. An order that only shrinks a position is
exempt from every limit (it adds no risk, and a loss stop must end flat). In the risk state REDUCING only
orders that shrink a position leave (:func:`reducing_only`).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

DEFERRED_NOTE = "{}: order deferred, an opposite-side order is working"
BUYING_POWER_NOTE = "{}: buy of {} {} to fit the buying power ({:.2f})"
ORDER_TYPES = ("market", "limit", "notional")
QTY_PLACES = 9  # Alpaca takes up to 9 decimals of a share
MIN_ORDER_DOLLARS = 1.0  # Alpaca's smallest notional order
LIMITS = ("max_order_notional", "max_position_notional", "max_orders_per_day", "max_orders_per_minute",
          "price_collar")


@dataclass(frozen=True)
class OrderIntent:
    """An order the loop wants to send: a market order, a limit order at ``limit_price``, or a market order for
    ``notional`` dollars (``qty`` then the shares they are expected to buy)."""

    symbol: str
    side: str  # "buy" | "sell"
    qty: float
    target_weight: float
    limit_price: float | None = None
    notional: float | None = None


def limit_price(side: str, price: float, collar: float) -> float:
    """A marketable limit price ``collar`` beyond ``price`` (a buy above, a sell below), in the increments the
    broker takes: whole cents at or above $1, 4 decimals below."""
    raw = price * (1.0 + collar) if side == "buy" else price * (1.0 - collar)
    return round(raw, 2 if raw >= 1.0 else 4)


def fraction_down(x: float) -> float:
    """``x`` cut toward zero to :data:`QTY_PLACES` decimals."""
    scale = 10**QTY_PLACES
    return math.trunc(round(x * scale, 3)) / scale


def notional_buy(qty: float, price: float) -> tuple[float, float] | None:
    """(dollars, shares) of a notional buy of about ``qty`` shares at ``price``: ``qty x price`` cut to cents,
    and the shares those dollars buy at ``price`` (cut to :data:`QTY_PLACES`); None under
    :data:`MIN_ORDER_DOLLARS`."""
    dollars = math.floor(round(qty * price * 100, 6)) / 100
    if dollars < MIN_ORDER_DOLLARS or price <= 0:
        return None
    return dollars, fraction_down(dollars / price)


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
class Refused:
    """An order a pre-trade limit refused: the ``limit`` (one of :data:`LIMITS`), the ``value`` that broke
    it and the ``bound`` it broke."""

    intent: OrderIntent
    limit: str
    value: float
    bound: float

    @property
    def note(self) -> str:
        i = self.intent
        return f"{i.symbol}: {i.side} of {i.qty:g} refused, {self.limit} {self.value:g} over {self.bound:g}"


@dataclass(frozen=True)
class OrderLimits:
    """Pre-trade limits; None is no limit. Notionals in account currency, ``price_collar`` a fraction
    (0.05: the reference price at most 5% away from the last trade price)."""

    max_order_notional: float | None = None
    max_position_notional: float | None = None
    max_orders_per_day: int | None = None
    max_orders_per_minute: int | None = None
    price_collar: float | None = None

    def __post_init__(self) -> None:
        for name in ("max_order_notional", "max_position_notional", "price_collar"):
            value = getattr(self, name)
            if value is not None and not (_finite(value, 0.0) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0 or None, got {value!r}")
        for name in ("max_orders_per_day", "max_orders_per_minute"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
                raise ValueError(f"{name} must be an integer >= 1 or None, got {value!r}")
        day, minute = self.max_orders_per_day, self.max_orders_per_minute
        if day is not None and minute is not None and minute > day:
            raise ValueError(f"max_orders_per_minute ({minute}) must not exceed max_orders_per_day ({day})")

    @property
    def active(self) -> bool:
        """Some limit is set."""
        return any(getattr(self, name) is not None for name in LIMITS)

    def breach(
        self, intent: OrderIntent, price: float, last: float | None, holding: float, minute: int, day: int
    ) -> Refused | None:
        """The first limit ``intent`` breaks, sized at ``price`` with the last trade at ``last`` (None:
        unknown, no collar), ``holding`` the position it changes (with working orders) and ``minute`` and
        ``day`` the orders already sent in the last minute and the day. An order that only reduces the
        position (:func:`reduces_only`) breaks none: a loss stop or a halt must be able to end flat."""
        if reduces_only(intent, holding):
            return None
        collar = self.price_collar
        if collar is not None and last is not None and last > 0 and abs(price / last - 1.0) > collar:
            return Refused(intent, "price_collar", abs(price / last - 1.0), collar)
        notional = intent.notional if intent.notional is not None else intent.qty * price
        if self.max_order_notional is not None and notional > self.max_order_notional:
            return Refused(intent, "max_order_notional", notional, self.max_order_notional)
        after = holding + (intent.qty if intent.side == "buy" else -intent.qty)
        cap = self.max_position_notional
        if cap is not None and abs(after) > abs(holding) and abs(after) * price > cap:
            return Refused(intent, "max_position_notional", abs(after) * price, cap)
        if self.max_orders_per_day is not None and day >= self.max_orders_per_day:
            return Refused(intent, "max_orders_per_day", day + 1, self.max_orders_per_day)
        if self.max_orders_per_minute is not None and minute >= self.max_orders_per_minute:
            return Refused(intent, "max_orders_per_minute", minute + 1, self.max_orders_per_minute)
        return None


    def check(
        self,
        intents: Iterable[OrderIntent],
        prices: Mapping[str, float],
        last: Mapping[str, float],
        holdings: Mapping[str, float],
        *,
        minute: int = 0,
        day: int = 0,
    ) -> tuple[tuple[OrderIntent, ...], tuple[Refused, ...]]:
        """(passed, refused): the intents within these limits, in order, each passed one counted against
        the rates. ``prices`` are the reference prices the intents were sized at, ``last`` the last trade
        prices, ``holdings`` the positions with their working orders, ``minute`` and ``day`` the orders
        sent in the last minute and the day so far."""
        passed: list[OrderIntent] = []
        refused: list[Refused] = []
        for i in intents:
            why = self.breach(i, prices.get(i.symbol, 0.0), last.get(i.symbol), holdings.get(i.symbol, 0.0),
                              minute, day)
            if why is None:
                passed.append(i)
                minute, day = minute + 1, day + 1
            else:
                refused.append(why)
        return tuple(passed), tuple(refused)

def reduces_only(intent: OrderIntent, holding: float) -> bool:
    """``intent`` shrinks the position ``holding`` (with its working orders) without carrying it through zero."""
    if holding > 0:
        return intent.side == "sell" and intent.qty <= holding
    return holding < 0 and intent.side == "buy" and intent.qty <= -holding


def reducing_only(
    intents: Iterable[OrderIntent], holdings: Mapping[str, float]
) -> tuple[tuple[OrderIntent, ...], tuple[OrderIntent, ...]]:
    """(kept, held): the intents that shrink the absolute size of a position in ``holdings`` (with its
    working orders), one that would carry it through zero cut to close it; the others (opening or adding,
    long or short) held."""
    kept: list[OrderIntent] = []
    held: list[OrderIntent] = []
    for i in intents:
        current = holdings.get(i.symbol, 0.0)
        closes = (current > 0 and i.side == "sell") or (current < 0 and i.side == "buy")
        if not closes:
            held.append(i)
        else:
            kept.append(i if i.qty <= abs(current) else replace(i, qty=float(abs(current))))
    return tuple(kept), tuple(held)


@dataclass(frozen=True)
class OrderPolicy:
    """Settings of the order rules; ``band`` 0 trades every change worth ``min_notional``. ``limits`` are
    applied by the send gate (:class:`openbell.risk.gate.SendGate`), not by :meth:`decide`. ``fractional``
    names the symbols sized in fractions of a share; ``order_type`` and ``limit_collar`` make the orders
    marketable limits (:func:`limit_price`), or ``order_type`` "notional" the buys of ``fractional`` symbols
    that open or add to a long notional market orders (:func:`notional_buy`).

    ``band`` is the rebalance band: no order for a change smaller than that share of the target position
    (0.2: a position within 20% of its target is left alone); a close (target 0) always goes."""

    min_notional: float = 100.0
    band: float = 0.0  # no order for |target - current| under band x |target| (shares); a close always goes
    whole_shares: bool = True
    sells_first: bool = True
    limits: OrderLimits = OrderLimits()
    fractional: frozenset[str] = frozenset()
    order_type: str = "market"
    limit_collar: float = 0.002

    def __post_init__(self) -> None:
        if not _finite(self.min_notional, 0.0):
            raise ValueError(f"min_notional must be a finite number >= 0, got {self.min_notional!r}")
        if not _finite(self.band, 0.0) or self.band > 1:
            raise ValueError(f"band must be a number in [0, 1], got {self.band!r}")
        for name in ("whole_shares", "sells_first"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be a bool, got {getattr(self, name)!r}")
        if not isinstance(self.limits, OrderLimits):
            raise ValueError(f"limits must be OrderLimits, got {self.limits!r}")
        if not isinstance(self.fractional, frozenset):
            raise ValueError(f"fractional must be a frozenset of symbols, got {self.fractional!r}")
        if self.order_type not in ORDER_TYPES:
            raise ValueError(f"order_type must be one of {ORDER_TYPES}, got {self.order_type!r}")
        if not _finite(self.limit_collar, 0.0) or not 0 < self.limit_collar <= 0.05:
            raise ValueError(f"limit_collar must be a number in (0, 0.05], got {self.limit_collar!r}")

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
            intent = self._intent(symbol, float(weights.get(symbol, 0.0)), equity, price, holdings.get(symbol, 0.0))
            if intent is None:
                continue
            if working and any(s != intent.side for s in working.get(symbol, ())):
                deferred.append(symbol)
                continue
            out.append(intent)
        if self.sells_first:
            out.sort(key=lambda o: o.side != "sell")
        decision = Decision(tuple(out), tuple(deferred), (), tuple(DEFERRED_NOTE.format(s) for s in deferred))
        return decision if hold is None else decision.hold(hold)

    def _target(self, symbol: str, weight: float, equity: float, price: float, current: float) -> float:
        """The position ``weight`` asks for, in the shares the broker takes; 0 (a close first) when it lies on the
        other side of zero from ``current``."""
        raw = weight * equity / price if equity > 0 else 0.0
        if symbol in self.fractional:
            target = float(math.trunc(raw)) if raw < 0 else fraction_down(raw)
        else:
            target = float(math.trunc(raw)) if self.whole_shares else raw
        return 0.0 if target * current < 0 else target

    def _intent(self, symbol: str, weight: float, equity: float, price: float, current: float) -> OrderIntent | None:
        """The order moving ``current`` toward ``weight``; None when none is worth sending."""
        target = self._target(symbol, weight, equity, price, current)
        diff = target - current
        if abs(diff) * price < self.min_notional:
            return None
        if self.band and target and abs(diff) < self.band * abs(target):
            return None
        if symbol in self.fractional:
            qty = round(abs(diff), QTY_PLACES)
        else:
            qty = math.floor(abs(diff)) if self.whole_shares else abs(diff)
        if qty <= 0:
            return None
        side = "buy" if diff > 0 else "sell"
        if self.order_type == "notional" and side == "buy" and current >= 0 and symbol in self.fractional:
            dollars = notional_buy(qty, price)
            return None if dollars is None else OrderIntent(symbol, side, dollars[1], weight, notional=dollars[0])
        limit = limit_price(side, price, self.limit_collar) if self.order_type == "limit" else None
        return OrderIntent(symbol, side, float(qty), weight, limit)

    def fit(
        self, intents: Sequence[OrderIntent], prices: Mapping[str, float], budget: float
    ) -> tuple[tuple[OrderIntent, ...], tuple[str, ...]]:
        """The intents with their buys scaled down together to cost at most ``budget`` (the buying power
        left), and a note per buy changed (a limit buy costs its limit price, a notional one its dollars). A
        scaled buy worth less than ``min_notional`` (a notional one: under $1) is dropped; sells are kept as they
        are. Whole shares round down, fractions to 9 decimals."""
        cost = sum(i.notional if i.notional is not None else i.qty * (i.limit_price or prices.get(i.symbol, 0.0))
                   for i in intents if i.side == "buy")
        if cost <= budget:
            return tuple(intents), ()
        scale = max(0.0, budget) / cost
        out: list[OrderIntent] = []
        notes: list[str] = []
        for i in intents:
            if i.side != "buy":
                out.append(i)
                continue
            qty = i.qty * scale
            if i.symbol in self.fractional:
                qty = fraction_down(qty)
            elif self.whole_shares:
                qty = float(math.floor(qty))
            price = prices.get(i.symbol, 0.0)
            dollars = notional_buy(qty, price) if i.notional is not None else None
            if qty <= 0 or qty * price < self.min_notional or (i.notional is not None and dollars is None):
                notes.append(BUYING_POWER_NOTE.format(i.symbol, f"{i.qty:g}", "dropped", budget))
                continue
            if dollars is not None:
                qty = dollars[1]
            out.append(replace(i, qty=qty, notional=None if dollars is None else dollars[0]))
            notes.append(BUYING_POWER_NOTE.format(i.symbol, f"{i.qty:g}", f"scaled to {qty:g}", budget))
        return tuple(out), tuple(notes)

    def close_all(self, holdings: Mapping[str, float]) -> tuple[OrderIntent, ...]:
        """Market orders closing every position in full (no minimum, no band: the liquidation), sells first."""
        out = [
            OrderIntent(symbol, "sell" if qty > 0 else "buy", float(abs(qty)), 0.0)
            for symbol, qty in sorted(holdings.items())
            if qty and math.isfinite(qty)
        ]
        if self.sells_first:
            out.sort(key=lambda o: o.side != "sell")
        return tuple(out)
