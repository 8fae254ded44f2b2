"""The live loop's alerts between minutes: broker refusals piling up, a bar stream that went silent.

Each is sent once per session through :func:`openbell.alerts.notify.alert` (which also keeps it to once
across attempts); the loss stop alerts where it trips (:mod:`openbell.session.live`).
"""

from __future__ import annotations

from datetime import date

from sqlalchemy import Engine

from openbell.alerts.notify import Level, alert
from openbell.session.report import SessionReport

REJECTIONS_ALERT = 5  # refusals in one attempt that make an alert


class LoopAlerts:
    """Checks the attempt's report after each minute (on the helper pool) and alerts what crossed a line."""

    def __init__(self, session_date: date, engine: Engine) -> None:
        self.d = session_date
        self._engine = engine
        self._sent: set[str] = set()

    def check(self, report: SessionReport) -> None:
        if report.rejected >= REJECTIONS_ALERT:
            reasons = ", ".join(f"{k} {v}" for k, v in sorted(report.rejections_by_reason.items())) or "-"
            self._once("rejections", f"openbell {self.d}: {report.rejected} orders refused by the broker",
                       f"Refusals so far: {reasons}. None is retried in a loop; see the session's order_rejected "
                       "events.", Level.WARNING)
        if report.stream_restarts:
            self._once("stream_down", f"openbell {self.d}: the bar stream went silent",
                       f"The bar stream was silent for minutes and was restarted ({report.stream_restarts} so far); "
                       "missed minutes are refilled from REST.", Level.WARNING)

    def _once(self, kind: str, title: str, body: str, level: Level) -> None:
        if kind in self._sent:
            return
        self._sent.add(kind)
        alert(kind, self.d.isoformat(), title, body, session_date=self.d, engine=self._engine, level=level)
