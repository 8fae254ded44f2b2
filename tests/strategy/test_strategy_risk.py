"""Risk limits on any strategy's output, and the daily loss latch."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from strategy_synth import make_bars

from openbell import backtest
from openbell.strategy import RiskGate, RiskLimits

U = ["ERX", "TNA", "FAS", "SSO", "TQQQ", "SVXY"]


def test_invalid_weights_are_zeroed_with_logged_reasons(caplog):
    gate = RiskGate(RiskLimits(max_weight=0.25, max_gross=1.0), universe=U)
    caplog.set_level(logging.WARNING, logger="openbell.strategy.risk")
    weights, notes = gate.apply(
        {"ERX": float("nan"), "TNA": float("inf"), "FAS": -0.2, "SSO": 0.6, "TQQQ": "0.1", "SVXY": 0.1,
         "AAPL": 0.1},
        equity=100_000.0,
    )
    assert weights == {"ERX": 0.0, "TNA": 0.0, "FAS": 0.0, "SSO": 0.25, "TQQQ": 0.0, "SVXY": 0.1}
    text = "\n".join(notes)
    for needle in ("ERX: weight nan", "TNA: weight inf", "FAS: short weight -0.2 not allowed",
                   "SSO: weight 0.6 clipped to max_weight 0.25", "TQQQ: weight '0.1' is not a finite number",
                   "dropped weight for 'AAPL'"):
        assert needle in text
    assert len(caplog.records) == len(notes)
    assert all(np.isfinite(v) for v in weights.values())


def test_gross_is_scaled_down_to_the_limit():
    gate = RiskGate(RiskLimits(max_weight=0.4, max_gross=1.0))
    weights, notes = gate.apply({s: 0.4 for s in U[:4]}, equity=1.0)
    assert sum(weights.values()) == pytest.approx(1.0)
    assert all(v == pytest.approx(0.25) for v in weights.values())
    assert any("gross 1.6 scaled down to max_gross 1" in n for n in notes)


def test_shorts_only_when_allowed():
    gate = RiskGate(RiskLimits(max_weight=0.3, max_gross=1.0, allow_short=True))
    weights, notes = gate.apply({"ERX": -0.5, "TNA": 0.2}, equity=1.0)
    assert weights == {"ERX": pytest.approx(-0.3), "TNA": pytest.approx(0.2)}
    assert notes == ["ERX: weight -0.5 clipped to max_weight 0.3"]


def test_daily_loss_latches_flat_for_the_day():
    gate = RiskGate(RiskLimits(daily_loss_limit=0.03))
    gate.start_day(100_000.0)
    w, notes = gate.apply({"ERX": 0.2}, equity=97_500.0)  # down 2.5%: still trading
    assert w == {"ERX": 0.2} and notes == [] and not gate.stopped
    w, notes = gate.apply({"ERX": 0.2}, equity=96_900.0)  # down 3.1%
    assert w == {"ERX": 0.0} and gate.stopped
    assert "daily loss 3.10% exceeds limit 3.00%" in notes[0]
    w, notes = gate.apply({"ERX": 0.2, "TNA": 0.1}, equity=101_000.0)  # recovered: still stopped
    assert w == {"ERX": 0.0, "TNA": 0.0} and notes == ["stopped for the day: all targets 0"]
    gate.start_day(101_000.0)
    assert gate.apply({"ERX": 0.2}, equity=101_000.0)[0] == {"ERX": 0.2}


def test_latch_survives_a_restart():
    gate = RiskGate(RiskLimits(), day_start_equity=100_000.0, stopped=True)
    assert gate.apply({"ERX": 0.2}, equity=100_500.0)[0] == {"ERX": 0.0}


@pytest.mark.parametrize("kwargs", [{"max_weight": 0}, {"max_weight": 1.5}, {"max_gross": float("nan")},
                                    {"daily_loss_limit": 0.0}, {"daily_loss_limit": 0.9},
                                    {"allow_short": "yes"}])
def test_bad_limits_are_refused(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        RiskLimits(**kwargs)


@pytest.mark.parametrize("equity", [float("nan"), 0.0, -5.0, "100"])
def test_bad_equity_is_refused(equity):
    gate = RiskGate(RiskLimits())
    with pytest.raises(ValueError, match="equity"):
        gate.apply({"ERX": 0.1}, equity=equity)
    assert gate.day_start_equity is None


def test_backtest_applies_the_same_limits_and_latch():
    bars = make_bars(3, seed=2)
    params = {"top_k": 1, "threshold": 0.0, "rebalance_minutes": 1, "lookback": 5, "vol_window": 10}
    free = backtest.run("momentum_rotation", params, bars, cost_bps=20.0)
    assert free.weights.to_numpy().max() == pytest.approx(1.0)
    limits = RiskLimits(max_weight=0.25, max_gross=1.0, daily_loss_limit=0.002)
    result = backtest.run("momentum_rotation", params, bars, cost_bps=20.0, limits=limits)
    w = result.weights.to_numpy()
    assert w.max() <= 0.25 + 1e-12 and w.min() >= 0
    assert result.stopped_sessions  # trading noise at 20 bps loses 0.2% quickly
    days = result.weights.index.tz_convert("America/New_York").strftime("%Y%m%d").astype(int)
    for day in result.stopped_sessions:
        w_day = result.weights[days == day].to_numpy()
        net = result.returns[days == day].to_numpy()
        gross = net + result.turnover[days == day].to_numpy() * 20.0 / 1e4
        # the equity a live gate sees after each minute, before that minute's trades
        seen = np.r_[1.0, np.cumprod(1 + net)[:-1]] * (1 + gross)
        breach = int(np.flatnonzero(seen < 1 - 0.002)[0])
        assert not w_day[breach:].any()  # flat from the breach to the close
        assert w_day[:breach].any()  # and trading before it


def test_each_kind_of_change_is_logged_once_a_day_and_counted(caplog):
    gate = RiskGate(RiskLimits(max_weight=0.25, max_gross=1.0), universe=U)
    gate.start_day(100_000.0)
    caplog.set_level(logging.DEBUG, logger="openbell.strategy.risk")
    for _ in range(30):  # a strategy that asks too much every minute
        weights, notes = gate.apply(
            {"SSO": 0.6, "TQQQ": 0.5, "ERX": 0.5, "FAS": 0.5, "SVXY": 0.5, "TNA": -0.1}, 100_000.0)
        assert weights["SSO"] == pytest.approx(0.2) and weights["TNA"] == 0.0 and len(notes) == 7
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 7  # five max_weight clips, the short, the gross: once each
    assert any("SSO: weight 0.6 clipped" in w for w in warnings)
    assert gate.clip_counts() == {
        "max_weight": {"ERX": 30, "FAS": 30, "SSO": 30, "SVXY": 30, "TQQQ": 30},
        "short": {"TNA": 30},
        "max_gross": {"*": 30},
    }
    gate.start_day(100_000.0)  # a new day: warned again
    caplog.clear()
    gate.apply({"SSO": 0.6}, 100_000.0)
    assert [r.levelno for r in caplog.records] == [logging.WARNING] and gate.clip_counts() == {"max_weight": {"SSO": 1}}


def test_a_latency_critical_caller_logs_the_first_changes_when_it_has_time(caplog):
    gate = RiskGate(RiskLimits(max_weight=0.25, max_gross=1.0))
    gate.defer_logs = True
    caplog.set_level(logging.WARNING, logger="openbell.strategy.risk")
    _, notes = gate.apply({"SSO": 0.5}, 100_000.0)
    assert notes and not caplog.records  # nothing written on the hot path
    gate.flush_logs()
    assert [r.getMessage() for r in caplog.records] == [f"risk: {notes[0]} (logged once today; later ones are counted)"]
    gate.apply({"SSO": 0.5}, 100_000.0)
    gate.flush_logs()
    assert len(caplog.records) == 1 and gate.clip_counts() == {"max_weight": {"SSO": 2}}


def test_a_short_of_a_symbol_the_broker_will_not_lend_is_zeroed_live_and_in_the_backtest_alike():
    limits = RiskLimits(max_weight=0.5, max_gross=1.0, daily_loss_limit=None, allow_short=True,
                        shortable=frozenset({"SQQQ"}))
    live, notes = RiskGate(limits).apply({"SQQQ": -0.3, "SDS": -0.3, "SPY": 0.3}, equity=1e5)
    assert live == {"SQQQ": -0.3, "SDS": 0.0, "SPY": 0.3}
    assert any("SDS" in n and "not shortable" in n for n in notes), notes
    vectorized = backtest.limited(np.array([[-0.3, -0.3, 0.3]]), limits, ["SQQQ", "SDS", "SPY"])
    assert vectorized.tolist() == [[-0.3, 0.0, 0.3]]
