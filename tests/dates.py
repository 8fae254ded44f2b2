"""Dates and Eastern market times the tests share."""

from __future__ import annotations

from datetime import date, datetime, time

from openbell.calendar import ET, Session, session

SESSION = date(2025, 11, 20)  # a full NYSE session (Thursday)
HALF_DAY = date(2025, 11, 28)  # the Friday after Thanksgiving: the close is 13:00 ET


def et(d: date, hh: int, mm: int = 0, ss: int = 0) -> datetime:
    """``hh:mm:ss`` Eastern time on ``d``."""
    return datetime.combine(d, time(hh, mm, ss), tzinfo=ET)


def at_et(hhmm: str, day: date = SESSION) -> datetime:
    """Eastern time ``"HH:MM"`` or ``"HH:MM:SS"`` on ``day`` (:data:`SESSION` unless given)."""
    h, m, *s = map(int, hhmm.split(":"))
    return et(day, h, m, s[0] if s else 0)


def the_session(day: date = SESSION) -> Session:
    """The NYSE session of ``day`` (:data:`SESSION` unless given), which must be one."""
    s = session(day)
    assert s is not None
    return s
