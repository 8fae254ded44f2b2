"""NYSE sessions from an offline calendar, and the simulator's market clock.

Market time runs ``speed`` times faster than the wall clock from an anchor pair
``(market_anchor, wall_anchor)``: ``market = market_anchor + (wall - wall_anchor) * speed``.
"""

from __future__ import annotations

import bisect
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import exchange_calendars as xc
import pandas as pd

ET = ZoneInfo("America/New_York")
CAL_START = "2005-01-03"
CAL_END = "2035-12-31"


@dataclass(frozen=True)
class Session:
    """One NYSE session: its date and its open and close as aware UTC datetimes."""

    day: date
    open: datetime
    close: datetime

    @property
    def minutes(self) -> int:
        """Number of regular-hours minutes (390, or 210 on an early-close day)."""
        return int((self.close - self.open).total_seconds() // 60)


class NyseCalendar:
    """The XNYS calendar as plain Python values, loaded once per process."""

    def __init__(self) -> None:
        cal = xc.get_calendar("XNYS", start=CAL_START, end=CAL_END)
        sched = cal.schedule
        self.days: list[date] = [ts.date() for ts in sched.index]
        self.opens: list[datetime] = [ts.to_pydatetime() for ts in sched["open"]]
        self.closes: list[datetime] = [ts.to_pydatetime() for ts in sched["close"]]
        self._index = {d: i for i, d in enumerate(self.days)}

    def index_of(self, day: date) -> int | None:
        """Position of ``day`` in the session list, or None if it is not a session."""
        return self._index.get(day)

    def is_session(self, day: date) -> bool:
        return day in self._index

    def session(self, day: date) -> Session:
        """The session on ``day``; ValueError if the exchange is closed that day."""
        i = self._index.get(day)
        if i is None:
            raise ValueError(f"{day.isoformat()} is not an NYSE session")
        return Session(day, self.opens[i], self.closes[i])

    def at(self, i: int) -> Session:
        return Session(self.days[i], self.opens[i], self.closes[i])

    def sessions_between(self, start: date, end: date) -> list[Session]:
        """Sessions with start <= date <= end."""
        lo = bisect.bisect_left(self.days, start)
        hi = bisect.bisect_right(self.days, end)
        return [self.at(i) for i in range(lo, hi)]

    def check_range(self, day: date) -> None:
        if not self.days[0] <= day <= self.days[-1]:
            raise ValueError(f"{day.isoformat()} is outside the calendar ({self.days[0]} .. {self.days[-1]})")

    def last_session_before(self, day: date) -> Session:
        """The latest session strictly before ``day``."""
        i = bisect.bisect_left(self.days, day) - 1
        if i < 0:
            raise ValueError(f"no session before {day}")
        return self.at(i)

    def next_open_close(self, t: datetime) -> tuple[bool, datetime, datetime]:
        """(is_open, next_open, next_close) at instant ``t`` (aware)."""
        i = bisect.bisect_right(self.opens, t) - 1  # last session opened at or before t
        if i >= 0 and t < self.closes[i]:
            nxt = min(i + 1, len(self.days) - 1)
            return True, self.opens[nxt], self.closes[i]
        j = i + 1
        if j >= len(self.days):
            raise ValueError(f"{t.isoformat()} is past the end of the calendar")
        return False, self.opens[j], self.closes[j]

    def session_on_or_after(self, day: date) -> Session | None:
        """The session on ``day``, or the first one after it."""
        i = bisect.bisect_left(self.days, day)
        return self.at(i) if i < len(self.days) else None

    def session_at(self, t: datetime) -> Session | None:
        """The session whose regular hours contain ``t`` (open <= t < close), if any."""
        i = bisect.bisect_right(self.opens, t) - 1
        if i >= 0 and t < self.closes[i]:
            return self.at(i)
        return None

    def latest_session_at_or_before(self, t: datetime) -> Session | None:
        """The last session that opened at or before ``t``."""
        i = bisect.bisect_right(self.opens, t) - 1
        return self.at(i) if i >= 0 else None


@lru_cache(maxsize=1)
def nyse() -> NyseCalendar:
    """The process-wide NYSE calendar."""
    return NyseCalendar()


def default_session_date(today: date | None = None) -> date:
    """The latest NYSE session before today (Eastern)."""
    today = today or datetime.now(ET).date()
    return nyse().last_session_before(today).day


def parse_hhmm(text: str) -> tuple[int, int, int]:
    """Parse ``HH:MM`` or ``HH:MM:SS``; ValueError with a clear message otherwise."""
    parts = text.strip().split(":")
    try:
        if len(parts) not in (2, 3):
            raise ValueError
        h, m = int(parts[0]), int(parts[1])
        s = int(parts[2]) if len(parts) == 3 else 0
        if not (0 <= h < 24 and 0 <= m < 60 and 0 <= s < 60):
            raise ValueError
    except ValueError:
        raise ValueError(f"expected a time as HH:MM or HH:MM:SS, got {text!r}") from None
    return h, m, s


def market_instant(day: date, hhmm: str) -> datetime:
    """``day`` at the Eastern wall time ``hhmm``, as an aware datetime in ET."""
    h, m, s = parse_hhmm(hhmm)
    return datetime(day.year, day.month, day.day, h, m, s, tzinfo=ET)


class SimClock:
    """Market time derived from the wall clock: ``market_anchor + (wall - wall_anchor) * speed``."""

    def __init__(self, market_anchor: datetime, speed: float, wall_anchor: float | None = None) -> None:
        if speed <= 0:
            raise ValueError("speed must be > 0")
        if market_anchor.tzinfo is None:
            raise ValueError("market_anchor must be timezone-aware")
        self.market_anchor = market_anchor.astimezone(ET)
        self.speed = float(speed)
        self.wall_anchor = time.time() if wall_anchor is None else float(wall_anchor)

    def now(self, wall: float | None = None) -> datetime:
        """Market time (aware, Eastern) at wall time ``wall`` (default: now)."""
        wall = time.time() if wall is None else wall
        return self.market_anchor + timedelta(seconds=(wall - self.wall_anchor) * self.speed)

    def wall_at(self, market: datetime) -> float:
        """The wall time (epoch seconds) at which market time reaches ``market``."""
        return self.wall_anchor + (market - self.market_anchor).total_seconds() / self.speed

    def publish(self) -> dict[str, object]:
        """The mapping clients need: current market time, the wall time it was taken at, the speed."""
        wall = time.time()
        market = self.now(wall)
        sess = nyse().session_on_or_after(market.date())
        out: dict[str, object] = {
            "market_time": market.isoformat(),
            "wall_time": datetime.fromtimestamp(wall, UTC).isoformat(),
            "speed": self.speed,
        }
        if sess is not None:
            out.update(
                session_date=sess.day.isoformat(),
                open=sess.open.astimezone(ET).isoformat(),
                close=sess.close.astimezone(ET).isoformat(),
            )
        return out


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def to_utc_ns(t: datetime) -> int:
    """Nanoseconds since the epoch of a datetime (naive = UTC), exact integer arithmetic."""
    if isinstance(t, pd.Timestamp):
        return int(t.value)
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return (t - _EPOCH) // _MICROSECOND * 1000


def iso_z(t: datetime) -> str:
    """RFC 3339 UTC with a Z suffix, as Alpaca writes timestamps."""
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")
