"""An Airflow timetable with one run per NYSE session.

Each run's data interval is the session, open to close (13:00 ET on half days; DST from the
zone database), and it is created at 09:00 ET that day, before the opening bell. Weekends and
holidays have no run. Pure computation on the offline calendar: no network, no database.
"""

from __future__ import annotations

import os
from datetime import UTC, date, datetime, time

import pendulum
from airflow.timetables.base import DagRunInfo, DataInterval, TimeRestriction, Timetable
from pendulum import DateTime

from openbell import calendar
from openbell.calendar import ET, CalendarRangeError, Session

RUN_AFTER_ET = time(9, 0)
END_DATE_ENV = "OPENBELL_DAG_END_DATE"


def schedule_end_date() -> datetime | None:
    """The DAG's ``end_date`` from ``$OPENBELL_DAG_END_DATE`` (a session date; its close), else None.

    A rehearsal against the simulator sets it to the simulated session, so the scheduler creates that
    session's run (and, with catchup off, no later one).
    """
    value = os.environ.get(END_DATE_ENV)
    if not value:
        return None
    d = date.fromisoformat(value)
    s = calendar.session(d)
    if s is None:
        raise ValueError(f"{END_DATE_ENV}={value} is not an NYSE session")
    return _pdt(s.close)


def _pdt(t: datetime) -> DateTime:
    return pendulum.instance(t.astimezone(UTC)).in_timezone("UTC")


def run_after_of(s: Session) -> datetime:
    """When the run for ``s`` is created: 09:00 ET on the session day, in UTC."""
    return datetime.combine(s.date, RUN_AFTER_ET, tzinfo=ET).astimezone(UTC)


class NYSESessionTimetable(Timetable):
    """One run per XNYS session at 09:00 ET; data interval = [open, close].

    ``start_date``/``end_date`` (``restriction.earliest``/``latest``) bound the run's logical date,
    which is the session open, as in Airflow's own timetables.
    """

    description = "One run per NYSE session, created at 09:00 ET; data interval: the session's open to close"

    @property
    def summary(self) -> str:
        return "NYSE sessions"

    @staticmethod
    def dagrun_info(s: Session) -> DagRunInfo:
        """The run for session ``s``."""
        return DagRunInfo(
            run_after=_pdt(run_after_of(s)),
            data_interval=DataInterval(start=_pdt(s.open), end=_pdt(s.close)),
        )

    def infer_manual_data_interval(self, *, run_after: DateTime) -> DataInterval:
        """The session on ``run_after``'s New York date, or the next session."""
        s = calendar.session_on_or_after(calendar.et_date(run_after))
        return DataInterval(start=_pdt(s.open), end=_pdt(s.close))

    def next_dagrun_info(
        self,
        *,
        last_automated_data_interval: DataInterval | None,
        restriction: TimeRestriction,
    ) -> DagRunInfo | None:
        try:
            s = self._next_session(last_automated_data_interval, restriction)
        except CalendarRangeError:
            return None  # past the end of the calendar's range
        if s is None or (restriction.latest is not None and s.open > restriction.latest):
            return None
        return self.dagrun_info(s)

    def _next_session(
        self, last: DataInterval | None, restriction: TimeRestriction
    ) -> Session | None:
        candidates: list[Session] = []
        if last is not None:
            candidates.append(_first_open_after(last.start, inclusive=False))
        if restriction.earliest is not None:
            candidates.append(_first_open_after(restriction.earliest, inclusive=True))
        if not restriction.catchup:
            now = datetime.now(UTC)
            if restriction.latest is not None:
                now = min(now, restriction.latest)
            candidates.append(_latest_started(now))
        elif last is None and restriction.earliest is None:
            return None  # no start date: nothing to schedule
        return max(candidates, key=lambda s: s.date)


def _first_open_after(t: datetime, *, inclusive: bool) -> Session:
    """The first session whose open is at/after ``t`` (``inclusive``) or strictly after it."""
    s = calendar.next_session(t)
    if s.open < t or (not inclusive and s.open == t):
        s = calendar.next_session(s.close)
    return s


def _latest_started(now: datetime) -> Session:
    """The latest session whose run (09:00 ET) is due at ``now``."""
    today = calendar.et_date(now)
    s = calendar.session(today)
    if s is not None and run_after_of(s) <= now:
        return s
    return calendar.previous_sessions(today, 1)[0]
