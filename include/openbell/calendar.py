"""NYSE (XNYS) sessions: dates, opens, closes and early closes, offline.

The calendar comes from ``exchange_calendars`` and is built once per process over a fixed range
(:data:`FIRST_DATE` .. :data:`LAST_DATE`); a date outside it raises :class:`CalendarRangeError`
rather than silently answering "no session". Every datetime returned is aware UTC; :data:`ET`
is the exchange's zone for anything a person reads.
"""

from __future__ import annotations

import bisect
import functools
from array import array
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

import pandas as pd

ET = ZoneInfo("America/New_York")
FIRST_DATE = date(2000, 1, 1)
LAST_DATE = date(2040, 12, 31)
REGULAR_CLOSE_ET = time(16, 0)
MIDDAY_ET = time(14, 30)
MIDDAY_BEFORE_CLOSE = timedelta(minutes=90)

Anchor = Literal["open", "close"]


class CalendarRangeError(ValueError):
    """A date outside the range the calendar was built for."""


@dataclass(frozen=True)
class Session:
    """One XNYS trading session; ``open`` and ``close`` are aware UTC datetimes."""

    date: date
    open: datetime
    close: datetime
    early_close: bool

    def minutes(self) -> pd.DatetimeIndex:
        """The start of every 1-minute bar in ``[open, close)``, in UTC."""
        return pd.date_range(self.open, self.close, freq="1min", inclusive="left", tz="UTC")

    def __str__(self) -> str:
        o, c = self.open.astimezone(ET), self.close.astimezone(ET)
        return f"{self.date.isoformat()} {o:%H:%M}-{c:%H:%M} ET"


@dataclass(frozen=True)
class _Table:
    """Every session of the range in three arrays (about 250 kB, kept for the process's life): the dates as
    ordinals, the opens and the closes as Unix seconds."""

    days: array
    opens: array
    closes: array

    def find(self, d: date) -> int | None:
        i = bisect.bisect_left(self.days, d.toordinal())
        return i if i < len(self.days) and self.days[i] == d.toordinal() else None

    def session_at(self, i: int) -> Session:
        close = datetime.fromtimestamp(self.closes[i], UTC)
        return Session(
            date=date.fromordinal(self.days[i]),
            open=datetime.fromtimestamp(self.opens[i], UTC),
            close=close,
            early_close=close.astimezone(ET).time() < REGULAR_CLOSE_ET,
        )


@functools.cache
def _table() -> _Table:
    from exchange_calendars.exchange_calendar_xnys import XNYSExchangeCalendar

    # built directly, not through get_calendar, which would keep the calendar object cached as well
    cal = XNYSExchangeCalendar(start=FIRST_DATE.isoformat(), end=LAST_DATE.isoformat())
    return _Table(array("l", (ts.date().toordinal() for ts in cal.sessions)),
                  array("q", (int(ts.timestamp()) for ts in cal.opens)),
                  array("q", (int(ts.timestamp()) for ts in cal.closes)))


def _check_date(d: date) -> None:
    if isinstance(d, datetime):
        raise TypeError(f"expected a date, got a datetime ({d!r}); pass .date() of an ET datetime")
    if not FIRST_DATE <= d <= LAST_DATE:
        raise CalendarRangeError(f"{d} is outside the NYSE calendar range {FIRST_DATE}..{LAST_DATE}")


def _check_aware(t: datetime, name: str) -> datetime:
    if not isinstance(t, datetime):
        raise TypeError(f"{name} must be a datetime, got {type(t).__name__}")
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got naive {t.isoformat()}")
    return t


def _at(i: int) -> Session:
    table = _table()
    if not 0 <= i < len(table.days):
        raise CalendarRangeError(f"no session in the NYSE calendar range {FIRST_DATE}..{LAST_DATE}")
    return table.session_at(i)


def et_date(t: datetime) -> date:
    """The New York calendar date of an aware datetime."""
    return _check_aware(t, "t").astimezone(ET).date()


def session(d: date) -> Session | None:
    """The session on ``d``, or None on weekends and holidays."""
    _check_date(d)
    i = _table().find(d)
    return None if i is None else _table().session_at(i)


def session_on_or_after(d: date) -> Session:
    """The session on ``d`` if there is one, else the next session after ``d``."""
    _check_date(d)
    return _at(bisect.bisect_left(_table().days, d.toordinal()))


def sessions_between(start: date, end: date) -> list[Session]:
    """Every session with ``start <= date <= end``, in order."""
    _check_date(start)
    _check_date(end)
    table = _table()
    lo, hi = bisect.bisect_left(table.days, start.toordinal()), bisect.bisect_right(table.days, end.toordinal())
    return [table.session_at(i) for i in range(lo, hi)]


def previous_sessions(d: date, n: int) -> list[Session]:
    """The ``n`` sessions before ``d`` (``d`` itself excluded), oldest first."""
    _check_date(d)
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    hi = bisect.bisect_left(_table().days, d.toordinal())
    if hi < n:
        raise CalendarRangeError(f"fewer than {n} sessions before {d} in the calendar (starts {FIRST_DATE})")
    return [_table().session_at(i) for i in range(hi - n, hi)]


def next_session(after: datetime) -> Session:
    """The first session whose close is strictly after ``after`` (the current one while it's open)."""
    t = _check_aware(after, "after").astimezone(UTC)
    return _at(bisect.bisect_right(_table().closes, t.timestamp()))


def last_completed_session(now: datetime) -> Session:
    """The latest session whose close is at or before ``now``."""
    t = _check_aware(now, "now").astimezone(UTC)
    return _at(bisect.bisect_right(_table().closes, t.timestamp()) - 1)


def session_for_run(logical_date: datetime | None, run_after: datetime) -> Session:
    """The session a DAG run is for.

    From the run's logical date (its data interval start) when it has one, else from ``run_after``:
    the session on that instant's New York date, or the next session if that date has none.
    """
    ref = logical_date if logical_date is not None else run_after
    return session_on_or_after(et_date(ref))


def run_session(dag_run: Any) -> Session:
    """The session of an Airflow DAG run (anything with ``logical_date`` and ``run_after``)."""
    return session_for_run(dag_run.logical_date, dag_run.run_after)


def at_offset(s: Session, anchor: Anchor, minutes: float) -> datetime:
    """``s``'s open or close shifted by ``minutes`` (negative: before), in UTC."""
    if anchor == "open":
        base = s.open
    elif anchor == "close":
        base = s.close
    else:
        raise ValueError(f"anchor must be 'open' or 'close', got {anchor!r}")
    return base + timedelta(minutes=minutes)


def midday(s: Session) -> datetime:
    """The midday re-optimization time: 14:30 ET, or 90 minutes before an early close if earlier."""
    at_1430 = datetime.combine(s.date, MIDDAY_ET, tzinfo=ET).astimezone(UTC)
    return min(at_1430, s.close - MIDDAY_BEFORE_CLOSE)
