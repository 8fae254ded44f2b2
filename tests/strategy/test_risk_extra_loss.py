"""A resume after a loss stop does not grant a fresh daily limit: the gate keeps the open's equity and counts
only the extra loss budget granted (dollars, cumulative for the day) on top of the daily loss limit."""

from __future__ import annotations

import math

import pytest

from openbell.strategy import RiskGate, RiskLimits
from openbell.strategy.risk import loss_breached

LIMITS = RiskLimits(daily_loss_limit=0.03)


def test_the_extra_loss_budget_widens_the_loss_check_by_its_dollars() -> None:
    assert loss_breached(LIMITS, 96_900.0, 100_000.0)  # lost 3,100 > 3,000
    assert not loss_breached(LIMITS, 96_900.0, 100_000.0, extra_loss=1_000.0)  # 3,100 <= 4,000
    assert not loss_breached(LIMITS, 96_050.0, 100_000.0, extra_loss=1_000.0)  # 3,950 <= 4,000
    assert loss_breached(LIMITS, 95_900.0, 100_000.0, extra_loss=1_000.0)  # 4,100 > 4,000
    assert not loss_breached(RiskLimits(daily_loss_limit=None), 1.0, 100_000.0, extra_loss=5.0)
    gate = RiskGate(LIMITS, day_start_equity=100_000.0, extra_loss=1_000.0)
    assert gate.extra_loss == 1_000.0 and not gate.breached(96_050.0) and gate.breached(95_900.0)


def test_a_resume_unlatches_the_stop_without_moving_the_days_start() -> None:
    gate = RiskGate(LIMITS)
    gate.start_day(100_000.0)
    w, _ = gate.apply({"ERX": 0.2}, equity=96_900.0)
    assert gate.stopped and w == {"ERX": 0.0}
    gate.resume(0.0)  # a resume without a budget: the next decision stops again at once
    assert not gate.stopped and gate.stop_reason is None and gate.day_start_equity == 100_000.0
    w, notes = gate.apply({"ERX": 0.2}, equity=96_900.0)
    assert gate.stopped and w == {"ERX": 0.0} and "daily loss 3.10% exceeds limit 3.00%" in notes[0]
    gate.resume(500.0)  # 3,100 lost <= 3,000 + 500: trading again, counted from the open
    w, notes = gate.apply({"ERX": 0.2}, equity=96_900.0)
    assert w == {"ERX": 0.2} and notes == [] and not gate.stopped
    assert gate.day_start_equity == 100_000.0 and gate.extra_loss == 500.0
    w, notes = gate.apply({"ERX": 0.2}, equity=96_400.0)  # 3,600 > 3,500: stopped again
    assert gate.stopped and w == {"ERX": 0.0}
    assert "plus 500.00 extra loss granted" in notes[0], notes


def test_a_new_day_clears_the_extra_loss_budget() -> None:
    gate = RiskGate(LIMITS, day_start_equity=100_000.0)
    gate.resume(2_000.0)
    gate.start_day(99_000.0)
    assert gate.extra_loss == 0.0 and gate.day_start_equity == 99_000.0


@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf, True, "100", None])
def test_a_bad_extra_loss_is_refused_and_changes_nothing(bad: object) -> None:
    gate = RiskGate(LIMITS, day_start_equity=100_000.0)
    gate.halt("loss stop")
    with pytest.raises(ValueError, match="extra_loss must be a finite number >= 0"):
        gate.resume(bad)  # type: ignore[arg-type]
    assert gate.stopped and gate.extra_loss == 0.0
    with pytest.raises(ValueError, match="extra_loss must be a finite number >= 0"):
        RiskGate(LIMITS, extra_loss=bad)  # type: ignore[arg-type]
