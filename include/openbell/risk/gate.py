"""The send gate: everything that may stop an order from leaving, decided in one place, once per order.

The order policy turns targets into orders; the gate decides whether each may leave (:meth:`SendGate.admit`),
in this order:

1. closed for every order (:meth:`SendGate.closed`): the session is liquidating or closed, the broker blocks
   the account or refused the key, the risk state is HALTED, or market time is at the trading cut-off;
2. the symbol is halted (the data stream's statuses), or the broker refused this symbol and side as not
   tradable or not fractionable earlier today;
3. the risk state is REDUCING and the order opens or adds to a position;
4. a pre-trade limit (:class:`~openbell.policy.OrderLimits`) refuses it; an order that only shrinks a position
   breaks none.

The same gate reaches the order workers: every job carries the cut-off as its deadline, and a change of the
gate's standing reason (:meth:`SendGate.listen`) is sent to them, so a job still waiting there (the request
budget, a 429, a retry) is not sent once the gate has closed (:class:`GatedDeadline`). Pure: no I/O; market
times are given by the caller.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from openbell.policy import OrderIntent, OrderLimits, Refused, reducing_only
from openbell.ports import Deadline
from openbell.risk.latch import GATE_CLOSED, GatedDeadline, GateLatch, closed_in_worker
from openbell.risk.owner import RiskChange, RiskOwner
from openbell.risk.state import RiskState

__all__ = ["GATE_CLOSED", "GateLatch", "GatedDeadline", "Held", "SendGate", "closed_in_worker"]

SEND_MARGIN = timedelta(seconds=2)  # market time: no order leaves this close to the liquidation
RATE_WINDOW = timedelta(minutes=1)

Rule = Literal["closed", "symbol_halted", "barred", "reducing", "limit"]


@dataclass(frozen=True)
class Held:
    """An order the gate stopped: the ``rule`` it broke, a note for the decision, and for a pre-trade limit
    the :class:`~openbell.policy.Refused` details."""

    intent: OrderIntent
    rule: Rule
    note: str
    refused: Refused | None = None


class SendGate:
    """The send gate of one attempt. ``risk`` owns the risk state; ``limits`` are the pre-trade limits;
    ``trade_until`` the trading cut-off (market time); ``winding_down`` tells whether the stored phase is
    liquidating or closed; ``last_prices`` the last trade price per symbol (the price collar's reference)."""

    def __init__(
        self,
        risk: RiskOwner,
        limits: OrderLimits,
        *,
        trade_until: datetime,
        winding_down: Callable[[], bool] = lambda: False,
        last_prices: Mapping[str, float] | None = None,
    ) -> None:
        self.risk = risk
        self.limits = limits
        self.trade_until = trade_until
        self._winding_down = winding_down
        self.last_prices: Mapping[str, float] = last_prices if last_prices is not None else {}
        self.halted: set[str] = set()  # symbols whose trading is halted now
        self.barred: dict[tuple[str, str], str] = {}  # (symbol, side) -> the broker's refusal that bars it
        self.no_shorts: dict[str, str] = {}  # symbol -> the broker's refusal of a short sale of it
        self.liquidating = False
        self.trading_blocked: str | None = None
        self.credentials_refused: str | None = None
        self.sent_today = 0  # orders admitted today (seeded with those earlier attempts sent)
        self._recent: deque[datetime] = deque()  # market times of the orders admitted in the last minute
        self._listeners: list[Callable[[str | None], None]] = []
        self._standing: str | None = None
        risk.listen(self._on_risk)

    # -- closing and opening ---------------------------------------------------------------------------

    def listen(self, listener: Callable[[str | None], None]) -> None:
        """Call ``listener`` with the gate's standing reason (None: open) each time it changes."""
        self._listeners.append(listener)

    def liquidate(self) -> None:
        """The session is liquidating or closed: nothing leaves from now on."""
        self.liquidating = True
        self.refresh()

    def block(self, reason: str) -> None:
        """The broker refuses the account every order: nothing leaves this session."""
        if self.trading_blocked is None:
            self.trading_blocked = reason
            self.refresh()

    def refuse_credentials(self, reason: str) -> None:
        """The broker refused the key: nothing leaves, and the attempt fails."""
        if self.credentials_refused is None:
            self.credentials_refused = reason
            self.refresh()

    def bar(self, symbol: str, side: str, why: str) -> None:
        """No ``side`` order in ``symbol`` for the rest of the session (not tradable, not fractionable)."""
        self.barred[(symbol, side)] = why

    def bar_shorts(self, symbol: str, why: str) -> None:
        """No sale that opens or adds to a short position in ``symbol`` for the rest of the session (the broker
        refused one: not shortable, or no longer easy to borrow); sales of shares held still leave."""
        self.no_shorts[symbol] = why

    def standing(self) -> str | None:
        """Why no order may leave whatever the time (None: the gate is open)."""
        if self.liquidating or self._winding_down():
            return "the session is liquidating"
        if self.trading_blocked is not None:
            return f"the broker blocks trading on the account ({self.trading_blocked})"
        if self.credentials_refused is not None:
            return f"the broker refused the credentials ({self.credentials_refused})"
        if self.risk.state is RiskState.HALTED:
            return "the risk state is HALTED"
        return None

    def closed(self, now: datetime) -> str | None:
        """Why no order may leave at market time ``now`` (None: orders may, each still checked)."""
        why = self.standing()
        if why is None and now >= self.trade_until - SEND_MARGIN:
            why = f"market time {now.isoformat()} is at the trading cut-off {self.trade_until.isoformat()}"
        return why

    def deadline(self, due: float) -> Deadline:
        """An order job's deadline: the trading cut-off, reached at wall time ``due``."""
        return Deadline(self.trade_until, due)

    # -- each order ------------------------------------------------------------------------------------

    def admit(
        self,
        intents: Sequence[OrderIntent],
        *,
        prices: Mapping[str, float],
        holding: Callable[[str], float],
        now: datetime,
    ) -> tuple[list[OrderIntent], list[Held]]:
        """(may leave, held): every intent checked against every rule, in the module's order. ``prices`` are
        the prices the intents were sized at, ``holding`` a symbol's position with its working orders, ``now``
        the market time. The admitted ones count against the rate limits as sent at ``now``."""
        if not intents:
            return [], []
        why = self.closed(now)
        if why is not None:
            return [], [Held(i, "closed", why) for i in intents]
        held: list[Held] = []
        kept: list[OrderIntent] = []
        for i in intents:
            if i.symbol in self.halted:
                held.append(Held(i, "symbol_halted", f"{i.symbol}: no {i.side} sent, trading in it is halted"))
            elif (barred := self.barred.get((i.symbol, i.side))) is not None:
                held.append(Held(i, "barred", f"{i.symbol}: no {i.side} sent, the broker refused it earlier "
                                              f"today ({barred})"))
            elif i.side == "sell" and i.symbol in self.no_shorts and holding(i.symbol) - i.qty < -1e-9:
                held.append(Held(i, "barred", f"{i.symbol}: no short sale sent, the broker refused one earlier "
                                              f"today ({self.no_shorts[i.symbol]})"))
            else:
                kept.append(i)
        if kept and self.risk.state is RiskState.REDUCING:
            kept, adding = _reducing(kept, holding)
            held += [Held(i, "reducing", f"{i.symbol}: {i.side} held, the risk state is REDUCING and it opens "
                                         "or adds") for i in adding]
        passed, refused = self._within_limits(kept, prices, holding, now)
        return passed, held + refused

    def _within_limits(self, intents: Sequence[OrderIntent], prices: Mapping[str, float],
                       holding: Callable[[str], float], now: datetime) -> tuple[list[OrderIntent], list[Held]]:
        """(passed, held): ``intents`` checked against the pre-trade limits; the passed ones count against the
        rate limits as sent at ``now``."""
        recent = self._recent
        while recent and recent[0] <= now - RATE_WINDOW:
            recent.popleft()
        passed, refused = self.limits.check(intents, prices, self.last_prices, {i.symbol: holding(i.symbol)
                                                                               for i in intents},
                                            minute=len(recent), day=self.sent_today)
        recent.extend([now] * len(passed))
        self.sent_today += len(passed)
        return list(passed), [Held(r.intent, "limit", r.note, r) for r in refused]

    # -- the standing reason's listeners ----------------------------------------------------------------

    def _on_risk(self, change: RiskChange) -> None:
        """A change of the risk state, announced as any other (:meth:`refresh`)."""
        self.refresh()

    def refresh(self) -> None:
        """Tell the listeners the standing reason if it changed since they were last told. The gate calls it
        after each of its own changes and each change of the risk state; the loop calls it after restoring a
        risk state, which announces nothing."""
        why = self.standing()
        if why != self._standing:
            self._standing = why
            for listener in self._listeners:
                listener(why)


def _reducing(intents: list[OrderIntent], holding: Callable[[str], float]) -> tuple[list[OrderIntent],
                                                                                     list[OrderIntent]]:
    kept, adding = reducing_only(intents, {i.symbol: holding(i.symbol) for i in intents})
    return list(kept), list(adding)
