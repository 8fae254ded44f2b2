"""The live loop's alerts between minutes: broker refusals piling up, a bar stream that went silent.

Each new occurrence alerts, counted over the whole session from the event journal (every attempt's
``order_rejected`` and ``stream_restart`` events), so a retried attempt neither alerts again what an
earlier one alerted nor starts its count from zero:

- refusals: when the day's count crosses 5, then 10, 20, 40, ... (each doubling), keyed by that line;
- the bar stream: each silence (restarts in a row with no streamed bar between them) alerts at its
  first restart and reminds at its 2nd, 4th, 8th, ... restart, keyed by the silence's first restart
  and the restart's number in it.

:func:`openbell.alerts.notify.alert` keeps each key to one alert across attempts and processes. The loss
stop alerts where it trips (:mod:`openbell.trading.live`), keyed by the market minute it tripped at.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import Engine, text

from openbell.alerts.notify import Level, alert
from openbell.calendar import ET
from openbell.trading.attempt_report import AttemptReport

log = logging.getLogger(__name__)

REJECTIONS_ALERT = 5  # the day's refusals that make the first alert; again at each doubling (10, 20, ...)

_REFUSALS_SQL = text(
    "SELECT COALESCE(payload->>'refusal', 'other') AS reason, count(*) AS n FROM events"
    " WHERE session_date = :d AND kind = 'order_rejected' AND payload->>'outcome' = 'rejected' GROUP BY 1"
)
_RESTARTS_SQL = text(
    "SELECT payload->>'last_bar_end' AS since, payload->>'market_time' AS at FROM events"
    " WHERE session_date = :d AND kind = 'stream_restart' ORDER BY id"
)


def et_minute(t: datetime) -> str:
    """``t`` as New York wall time to the minute, marked: ``14:33 ET``."""
    return f"{t.astimezone(ET):%H:%M} ET"


def line_crossed(n: int) -> int | None:
    """The highest alert line (5, 10, 20, 40, ...) at or below ``n``; None below the first."""
    if n < REJECTIONS_ALERT:
        return None
    line = REJECTIONS_ALERT
    while line * 2 <= n:
        line *= 2
    return line


def _reminds(n: int) -> bool:
    """Whether the ``n``-th restart of one silence alerts: the 1st, 2nd, 4th, 8th, ..."""
    return n >= 1 and n & (n - 1) == 0


@dataclass(frozen=True)
class Restart:
    """One restart of the bar stream as journaled: the end of the last streamed minute, and when."""

    since: datetime
    at: datetime


@dataclass(frozen=True)
class Silence:
    """A restart seen as the ``n``-th of the silence that began with the restart at ``first``."""

    first: Restart
    restart: Restart
    n: int
    of_day: int


def silences(restarts: list[Restart]) -> list[Silence]:
    """Each restart placed in its silence: a restart whose last bar is the previous restart's time (no bar
    streamed in between) continues that silence; any other begins a new one."""
    out: list[Silence] = []
    for i, r in enumerate(restarts, 1):
        prev = out[-1] if out else None
        if prev is not None and r.since == prev.restart.at:
            out.append(Silence(prev.first, r, prev.n + 1, i))
        else:
            out.append(Silence(r, r, 1, i))
    return out


class _Due:
    """When to read the journal again: the attempt's count moved, on the check after that (the journal is
    written a moment after the count moves), and while the journal holds fewer than the attempt counted."""

    def __init__(self) -> None:
        self.count = 0
        self.again = False
        self.behind = False

    def __call__(self, count: int) -> bool:
        if count != self.count:
            self.count, self.again = count, True
            return True
        if self.again or self.behind:
            self.again = False
            return True
        return False


class LoopAlerts:
    """Checks the attempt's report after each minute (on the helper pool) and alerts what crossed a line."""

    def __init__(self, session_date: date, engine: Engine) -> None:
        self.d = session_date
        self._engine = engine
        self._sent: set[tuple[str, str]] = set()
        self._refusals_due = _Due()
        self._restarts_due = _Due()

    def check(self, report: AttemptReport) -> None:
        if report.rejected and self._refusals_due(report.rejected):
            self._refusals(report)
        if report.stream_restarts and self._restarts_due(report.stream_restarts):
            self._restarts(report)

    # -- refusals ---------------------------------------------------------------------------------

    def _refusals(self, report: AttemptReport) -> None:
        by_reason: dict[str, int] = {}
        try:
            with self._engine.connect() as conn:
                by_reason = {r.reason: int(r.n) for r in conn.execute(_REFUSALS_SQL, {"d": self.d})}
        except Exception as exc:
            log.warning("alerts: the journal's refusals unreadable (%s); counting this attempt's", type(exc).__name__)
        total = sum(by_reason.values())
        self._refusals_due.behind = total < report.rejected
        if self._refusals_due.behind:  # this attempt's own are not all journaled yet (or unreadable)
            by_reason, total = dict(report.rejections_by_reason), report.rejected
        line = line_crossed(total)
        if line is None:
            return
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(by_reason.items())) or "-"
        self._once("rejections", str(line), f"openbell {self.d}: {total} orders refused by the broker",
                   f"Refusals today: {reasons}. None is retried in a loop; see the session's order_rejected "
                   f"events. The next alert comes at {line * 2} refusals.", Level.WARNING)

    # -- the bar stream ---------------------------------------------------------------------------

    def _restarts(self, report: AttemptReport) -> None:
        try:
            with self._engine.connect() as conn:
                rows = conn.execute(_RESTARTS_SQL, {"d": self.d}).all()
            restarts = [Restart(datetime.fromisoformat(r.since), datetime.fromisoformat(r.at)) for r in rows]
        except Exception as exc:
            log.warning("alerts: the journal's stream restarts unreadable (%s)", type(exc).__name__)
            self._restarts_due.behind = False
            self._unjournaled_restart(report)
            return
        self._restarts_due.behind = len(restarts) < report.stream_restarts
        for s in silences(restarts):
            if not _reminds(s.n):
                continue
            since, at = et_minute(s.first.since), et_minute(s.restart.at)
            if s.n == 1:
                title = f"openbell {self.d}: the bar stream went silent (no bar since {since})"
            else:
                title = f"openbell {self.d}: the bar stream still silent since {since} ({s.n} restarts)"
            body = (f"No bar streamed since {since}; the stream was restarted at {at} (restart {s.n} of this "
                    f"silence, restart {s.of_day} today). Missed minutes are refilled from REST. This silence "
                    f"reminds again at its restart {s.n * 2}.")
            self._once("stream_down", f"{s.first.at.isoformat()}#{s.n}", title, body, Level.WARNING)

    def _unjournaled_restart(self, report: AttemptReport) -> None:
        """The journal cannot be read: alert this attempt's restarts by their count (1st, 2nd, 4th, ...)."""
        n = report.stream_restarts
        if _reminds(n):
            self._once("stream_down", f"attempt-restart#{n}", f"openbell {self.d}: the bar stream went silent",
                       f"The bar stream was silent and was restarted ({n} so far in this attempt); missed minutes "
                       "are refilled from REST.", Level.WARNING)

    def _once(self, kind: str, key: str, title: str, body: str, level: Level) -> None:
        if (kind, key) in self._sent:
            return
        self._sent.add((kind, key))
        alert(kind, key, title, body, session_date=self.d, engine=self._engine, level=level)
