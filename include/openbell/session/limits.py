"""The send gate's pre-trade limits and risk state, applied to a decision's orders right before they leave.

:class:`SendLimits` keeps what the limits need between decisions (the orders sent in the last minute of
market time and in the day) and records each refusal: counted by limit in the report, noted in the
decision, and journaled as an ``order_refused`` event. The rules themselves are the order policy's
(:meth:`openbell.policy.OrderPolicy.limit`, :func:`openbell.policy.reducing_only`).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime, timedelta

from sqlalchemy import Connection, text

from openbell.policy import OrderIntent, OrderPolicy, reducing_only
from openbell.session.recording import Recorder
from openbell.session.report import SessionReport

log = logging.getLogger(__name__)

RISK_STATES = ("ACTIVE", "REDUCING", "HALTED")
RATE_WINDOW = timedelta(minutes=1)


def orders_sent(conn: Connection, session_date: date) -> int:
    """The strategy's orders earlier attempts sent in the session (everything but those never sent)."""
    row = conn.execute(
        text("SELECT count(*) FROM orders WHERE session_date = :d AND origin = 'strategy' AND status <> 'not_sent'"),
        {"d": session_date},
    ).first()
    return int(row[0]) if row else 0


def risk_state(value: str) -> str:
    """``value`` as one of :data:`RISK_STATES` (any case); ValueError otherwise."""
    state = str(value).upper()
    if state not in RISK_STATES:
        raise ValueError(f"risk state must be one of {', '.join(RISK_STATES)}, got {value!r}")
    return state


class SendLimits:
    """The pre-trade limits of one attempt. ``last_prices`` (the last trade price per symbol) is the
    feed's, attached by the caller; ``sent_today`` is seeded with the orders earlier attempts sent."""

    def __init__(self, policy: OrderPolicy, recorder: Recorder, report: SessionReport,
                 last_prices: Mapping[str, float] | None = None) -> None:
        self.policy = policy
        self._recorder = recorder
        self._report = report
        self.last_prices: Mapping[str, float] = last_prices if last_prices is not None else {}
        self.sent_today = 0
        self._recent: deque[datetime] = deque()  # market times of the orders sent in the last minute

    def apply(
        self,
        intents: Sequence[OrderIntent],
        prices: Mapping[str, float],
        holding: Callable[[str], float],
        now: datetime,
        notes: list[str],
        seq: int,
    ) -> list[OrderIntent]:
        """The intents within the limits, counted as sent at market time ``now``; each refused one is
        recorded (report, ``notes``, an ``order_refused`` event) and never sent."""
        recent = self._recent
        while recent and recent[0] <= now - RATE_WINDOW:
            recent.popleft()
        if self.policy.limits.active:
            holdings = {i.symbol: holding(i.symbol) for i in intents}
            passed, refused = self.policy.limit(intents, prices, self.last_prices, holdings,
                                                minute=len(recent), day=self.sent_today)
            for r in refused:
                self._refused(r.intent, r.limit, r.value, r.bound, r.note, seq)
                notes.append(r.note)
            intents = list(passed)
        recent.extend([now] * len(intents))
        self.sent_today += len(intents)
        return list(intents)

    def reducing(self, intents: Sequence[OrderIntent], holding: Callable[[str], float]
                 ) -> tuple[list[OrderIntent], list[OrderIntent]]:
        """(kept, held) in the risk state REDUCING: only orders that shrink a position go."""
        kept, held = reducing_only(intents, {i.symbol: holding(i.symbol) for i in intents})
        return list(kept), list(held)

    def _refused(self, intent: OrderIntent, limit: str, value: float, bound: float, note: str, seq: int) -> None:
        counts = self._report.orders_refused_by_limit
        counts[limit] = counts.get(limit, 0) + 1
        log.warning("%s (decision %d)", note, seq)
        self._recorder.event("order_refused", {
            "symbol": intent.symbol, "side": intent.side, "qty": intent.qty, "limit": limit,
            "value": round(value, 6), "bound": bound, "decision_seq": seq,
        })
