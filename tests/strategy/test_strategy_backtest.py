"""Backtest accounting and refusal of bad bar frames."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from strategy_synth import make_bars

from openbell import backtest
from openbell.strategy import InvalidParams


@pytest.fixture(scope="module")
def bars() -> pd.DataFrame:
    return make_bars(3, seed=4)


def test_result_is_consistent(bars):
    r = backtest.run("momentum_rotation", {"lookback": 20, "vol_window": 40}, bars, warmup_sessions=1)
    assert r.sessions == [20240307, 20240308]
    assert r.equity.iloc[-1] == pytest.approx(float(np.prod(1 + r.returns.to_numpy())))
    assert r.total_return == pytest.approx(r.equity.iloc[-1] - 1)
    assert 0 <= r.max_drawdown < 1
    # nothing is held overnight: the last minute of each session is flat
    days = r.weights.index.tz_convert("America/New_York").date
    last_rows = r.weights.groupby(days).tail(1)
    assert not last_rows.to_numpy().any()
    assert r.weights.to_numpy().any()


def test_costs_are_charged_on_turnover(bars):
    cheap = backtest.run("momentum_rotation", None, bars, cost_bps=0.0)
    dear = backtest.run("momentum_rotation", None, bars, cost_bps=10.0)
    assert dear.turnover.sum() > 0
    np.testing.assert_allclose(cheap.returns - dear.returns, dear.turnover * 10.0 / 1e4, atol=1e-15)
    assert dear.total_return < cheap.total_return


def test_bad_frames_are_refused_and_left_intact(bars):
    frame = bars.head(50).copy()
    before = frame.copy()
    naive = frame.assign(timestamp=frame["timestamp"].dt.tz_localize(None))
    dup = pd.concat([frame, frame.head(1)])
    nan = frame.copy()
    nan.loc[nan.index[3], "close"] = np.nan
    neg = frame.copy()
    neg.loc[neg.index[5], "open"] = -1.0
    cases = [
        (naive, "timezone-aware"),
        (dup, "1 duplicate bar"),
        (nan, "missing or non-positive price"),
        (neg, "missing or non-positive price"),
        (frame.drop(columns=["close"]), "lack column"),
        (frame[frame["symbol"] == "XYZ"], "no bars for any symbol"),
    ]
    for bad, needle in cases:
        with pytest.raises(ValueError, match=needle):
            backtest.run("momentum_rotation", None, bad, warmup_sessions=0)
    pd.testing.assert_frame_equal(frame, before)


def test_bad_arguments_are_refused(bars):
    with pytest.raises(ValueError, match="warmup_sessions"):
        backtest.run("momentum_rotation", None, bars, warmup_sessions=3)
    with pytest.raises(ValueError, match="cost_bps"):
        backtest.run("momentum_rotation", None, bars, cost_bps=-1)
    with pytest.raises(InvalidParams, match="top_k"):
        backtest.run("momentum_rotation", {"top_k": 9}, bars)
