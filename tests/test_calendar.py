"""openbell.calendar against known NYSE facts (half days, holidays, DST) and its input checks."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pandas as pd
import pytest

from dates import et
from openbell import calendar as cal


def test_half_day_after_thanksgiving_closes_at_13_et() -> None:
    s = cal.session(date(2025, 11, 28))
    assert s is not None
    assert s.open == et(date(2025, 11, 28), 9, 30)
    assert s.close == et(date(2025, 11, 28), 13, 0)
    assert s.close.tzinfo == UTC and s.open.tzinfo == UTC
    assert s.early_close
    bars = s.minutes()
    assert len(bars) == 210
    assert bars[0] == pd.Timestamp(s.open) and bars[-1] == pd.Timestamp(s.close - timedelta(minutes=1))
    assert str(bars.tz) == "UTC"


def test_regular_day_has_390_minutes_and_no_early_close() -> None:
    s = cal.session(date(2025, 11, 26))
    assert s is not None and not s.early_close
    assert s.close == et(date(2025, 11, 26), 16, 0)
    assert len(s.minutes()) == 390


@pytest.mark.parametrize(
    "d",
    [date(2025, 11, 27), date(2025, 12, 25), date(2026, 1, 1), date(2025, 11, 29), date(2025, 11, 30)],
    ids=["thanksgiving", "christmas", "new-year", "saturday", "sunday"],
)
def test_no_session_on_holidays_and_weekends(d: date) -> None:
    assert cal.session(d) is None


def test_dst_moves_the_utc_open_not_the_et_open() -> None:
    before, after = cal.session(date(2025, 3, 7)), cal.session(date(2025, 3, 10))
    assert before is not None and after is not None
    assert before.open == datetime(2025, 3, 7, 14, 30, tzinfo=UTC)
    assert after.open == datetime(2025, 3, 10, 13, 30, tzinfo=UTC)
    autumn = cal.session(date(2025, 11, 3))
    assert autumn is not None and autumn.close == datetime(2025, 11, 3, 21, 0, tzinfo=UTC)


def test_sessions_between_skips_holidays_and_includes_both_ends() -> None:
    got = [s.date for s in cal.sessions_between(date(2025, 11, 24), date(2025, 12, 1))]
    assert got == [date(2025, 11, d) for d in (24, 25, 26, 28)] + [date(2025, 12, 1)]
    assert cal.sessions_between(date(2025, 11, 29), date(2025, 11, 30)) == []


def test_previous_sessions_are_the_n_before_oldest_first() -> None:
    got = [s.date for s in cal.previous_sessions(date(2025, 12, 1), 3)]
    assert got == [date(2025, 11, 25), date(2025, 11, 26), date(2025, 11, 28)]
    assert cal.previous_sessions(date(2025, 12, 1), 0) == []
    with pytest.raises(ValueError, match="n must be"):
        cal.previous_sessions(date(2025, 12, 1), -1)


def test_next_session_is_the_current_one_until_its_close() -> None:
    wed = date(2025, 11, 26)
    assert cal.next_session(et(wed, 3)).date == wed
    assert cal.next_session(et(wed, 12)).date == wed
    assert cal.next_session(et(wed, 16)).date == date(2025, 11, 28)  # at the close: the next one
    assert cal.next_session(et(date(2025, 11, 28), 14)).date == date(2025, 12, 1)


def test_last_completed_session() -> None:
    assert cal.last_completed_session(et(date(2025, 11, 28), 12, 59)).date == date(2025, 11, 26)
    assert cal.last_completed_session(et(date(2025, 11, 28), 13, 0)).date == date(2025, 11, 28)
    assert cal.last_completed_session(et(date(2025, 11, 30), 12)).date == date(2025, 11, 28)


def test_session_for_run_prefers_the_logical_date() -> None:
    s = cal.session(date(2025, 11, 28))
    assert s is not None
    assert cal.session_for_run(s.open, datetime(2025, 12, 3, tzinfo=UTC)) == s


def test_session_for_run_without_logical_date_uses_et_date_of_run_after() -> None:
    # 22:30 ET on Monday is already Tuesday in UTC: still Monday's session
    monday_evening = et(date(2025, 3, 10), 22, 30)
    assert monday_evening.astimezone(UTC).date() == date(2025, 3, 11)
    assert cal.session_for_run(None, monday_evening).date == date(2025, 3, 10)
    # Saturday and Thanksgiving roll forward to the next session
    assert cal.session_for_run(None, et(date(2025, 11, 29), 10)).date == date(2025, 12, 1)
    assert cal.session_for_run(None, et(date(2025, 11, 27), 10)).date == date(2025, 11, 28)


def test_at_offset_and_midday() -> None:
    normal, half = cal.session(date(2025, 11, 26)), cal.session(date(2025, 11, 28))
    assert normal is not None and half is not None
    assert cal.at_offset(normal, "close", -2) == et(normal.date, 15, 58)
    assert cal.at_offset(half, "close", -2) == et(half.date, 12, 58)
    assert cal.at_offset(normal, "open", 0.5) == et(normal.date, 9, 30) + timedelta(seconds=30)
    assert cal.midday(normal) == et(normal.date, 14, 30)
    assert cal.midday(half) == et(half.date, 11, 30)
    with pytest.raises(ValueError, match="anchor"):
        cal.at_offset(normal, "noon", 0)  # type: ignore[arg-type]


def test_bad_input_is_refused_clearly() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        cal.next_session(datetime(2025, 11, 26, 12))
    with pytest.raises(ValueError, match="timezone-aware"):
        cal.session_for_run(None, datetime(2025, 11, 26, 12))
    with pytest.raises(TypeError, match="expected a date"):
        cal.session(datetime(2025, 11, 26, tzinfo=UTC))
    with pytest.raises(cal.CalendarRangeError, match="outside"):
        cal.session(date(1999, 12, 31))
    with pytest.raises(cal.CalendarRangeError, match="outside"):
        cal.sessions_between(date(2040, 1, 1), date(2041, 1, 1))
    with pytest.raises(cal.CalendarRangeError):
        cal.previous_sessions(date(2000, 1, 5), 10)
    with pytest.raises(cal.CalendarRangeError):
        cal.next_session(datetime(2041, 1, 1, tzinfo=UTC))
