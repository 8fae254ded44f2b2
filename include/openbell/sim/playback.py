"""What the simulator plays: which NYSE sessions, and the market time it plays them at.

Sessions come from :mod:`openbell.calendar` (the one XNYS calendar); the simulator plays those from
:data:`FIRST_DAY` to :data:`LAST_DAY`, and its synthetic market numbers them from :data:`FIRST_DAY`
(:func:`session_number`), so a session's bars do not depend on the calendar's wider range.

:class:`MarketPlayback` is the simulator's own market time: it runs ``speed`` times faster than the wall
clock from an anchor pair ``(market_anchor, wall_anchor)``:
``market = market_anchor + (wall - wall_anchor) * speed``. It publishes that mapping at ``/sim/clock``,
which the trading side reads with :class:`openbell.clock.SimClock`.
"""

from __future__ import annotations

import functools
import time
from datetime import UTC, date, datetime, timedelta

import pandas as pd

from openbell import calendar
from openbell.calendar import ET, Session

FIRST_DAY = date(2005, 1, 3)
LAST_DAY = date(2035, 12, 31)


@functools.cache
def _played() -> tuple[tuple[Session, ...], dict[date, int]]:
    played = tuple(calendar.sessions_between(FIRST_DAY, LAST_DAY))
    return played, {s.date: i for i, s in enumerate(played)}


def played_sessions() -> tuple[Session, ...]:
    """Every session the simulator can play, oldest first."""
    return _played()[0]


def session_number(day: date) -> int | None:
    """``day``'s position among :func:`played_sessions`, or None if it is not one of them."""
    return _played()[1].get(day)


def is_session(day: date) -> bool:
    """True when ``day`` is a session the simulator can play."""
    return day in _played()[1]


def session_minutes(s: Session) -> int:
    """Number of regular-hours minutes (390, or 210 on an early-close day)."""
    return int((s.close - s.open).total_seconds() // 60)


def check_range(day: date) -> None:
    """ValueError unless ``day`` lies within the sessions the simulator plays."""
    played = played_sessions()
    first, last = played[0].date, played[-1].date
    if not first <= day <= last:
        raise ValueError(f"{day.isoformat()} is outside the calendar ({first} .. {last})")


def sessions_between(start: date, end: date) -> list[Session]:
    """Played sessions with start <= date <= end."""
    played = played_sessions()
    lo, hi = max(start, played[0].date), min(end, played[-1].date)
    return calendar.sessions_between(lo, hi) if lo <= hi else []


def session_on_or_after(day: date) -> Session | None:
    """The played session on ``day``, or the first one after it."""
    played = played_sessions()
    if day > played[-1].date:
        return None
    return calendar.session_on_or_after(max(day, played[0].date))


def last_session_before(day: date) -> Session:
    """The latest played session strictly before ``day``."""
    played = played_sessions()
    if day <= played[0].date:
        raise ValueError(f"no session before {day}")
    if day > played[-1].date:
        return played[-1]
    return calendar.previous_sessions(day, 1)[0]


def session_at(t: datetime) -> Session | None:
    """The played session whose regular hours contain ``t`` (open <= t < close), if any."""
    played = played_sessions()
    if t < played[0].open or t >= played[-1].close:
        return None
    s = calendar.next_session(t)
    return s if s.open <= t else None


def next_open_close(t: datetime) -> tuple[bool, datetime, datetime]:
    """(is_open, next_open, next_close) at instant ``t`` (aware), as Alpaca's ``/v2/clock`` says them."""
    played = played_sessions()
    if t >= played[-1].close:
        raise ValueError(f"{t.isoformat()} is past the end of the calendar")
    if t < played[0].open:
        return False, played[0].open, played[0].close
    s = calendar.next_session(t)  # the first session closing after t: the open one, else the next
    if s.open <= t:
        i = _played()[1][s.date]
        return True, played[min(i + 1, len(played) - 1)].open, s.close
    return False, s.open, s.close


def default_session_date(today: date | None = None) -> date:
    """The latest NYSE session before today (Eastern)."""
    today = today or datetime.now(ET).date()
    return last_session_before(today).date


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


class MarketPlayback:
    """The simulator's market time: ``market_anchor + (wall - wall_anchor) * speed``, published at
    ``/sim/clock``."""

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
        sess = session_on_or_after(market.date())
        out: dict[str, object] = {
            "market_time": market.isoformat(),
            "wall_time": datetime.fromtimestamp(wall, UTC).isoformat(),
            "speed": self.speed,
        }
        if sess is not None:
            out.update(
                session_date=sess.date.isoformat(),
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
