"""Live/backtest parity: on_minute replay gives the vectorized targets at every minute."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from strategy_synth import make_bars

from openbell import backtest
from openbell.strategy import build
from openbell.strategy.data import prepare

CASES = {
    "defaults": {},
    "long-windows-cross-sessions": {
        "lookback": 240, "vol_window": 390, "top_k": 3, "threshold": 0.5, "rebalance_minutes": 1,
        "weighting": "score",
    },
    "odd-buckets": {"lookback": 7, "vol_window": 13, "top_k": 6, "threshold": 0.0, "rebalance_minutes": 7},
}


@pytest.fixture(scope="module")
def bars() -> pd.DataFrame:
    return make_bars(4, seed=11)


def vectorized(params: dict, bars: pd.DataFrame) -> pd.DataFrame:
    data = prepare(bars, build("momentum_rotation", params).universe)
    w = backtest.vector_targets("momentum_rotation", params, data)
    return pd.DataFrame(w, index=data.times, columns=list(data.symbols))


def assert_same(live: pd.DataFrame, vec: pd.DataFrame) -> None:
    expected = vec.loc[live.index]
    assert len(live) > 200
    assert list(live.columns) == list(expected.columns)
    np.testing.assert_allclose(live.to_numpy(), expected.to_numpy(), rtol=0, atol=1e-9)
    # the comparison is not vacuous: positions are taken and change over time
    assert (live.to_numpy() > 0).any()
    assert len({tuple(r) for r in live.to_numpy().round(12)}) > 5


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("warmup_sessions", [0, 1, 2])
def test_replay_matches_vectorized_after_session_warmup(bars, name, warmup_sessions):
    params = CASES[name]
    live = backtest.replay(build("momentum_rotation", params), bars, warmup_sessions=warmup_sessions)
    assert_same(live, vectorized(params, bars))


@pytest.mark.parametrize("name", list(CASES))
def test_restart_mid_session_warms_up_to_the_same_state(bars, name):
    """A restart (or hot reload) at 11:17 ET warms up on prior sessions plus today so far."""
    params = CASES[name]
    restart = pd.Timestamp("2024-03-11 11:17", tz="America/New_York")
    live = backtest.replay(build("momentum_rotation", params), bars, warmup_until=restart)
    assert live.index[0] == restart
    assert_same(live, vectorized(params, bars))


def test_lookbacks_cross_the_overnight_gap(bars):
    """With warmup, long windows score at the open; without the prior session they cannot."""
    params = CASES["long-windows-cross-sessions"]
    vec = vectorized(params, bars)
    data = prepare(bars, list(vec.columns))
    second_open = data.times[data.session_starts[1]]
    assert vec.loc[second_open].sum() > 0

    cold = backtest.replay(build("momentum_rotation", params), bars[bars["timestamp"] >= second_open])
    assert cold.loc[second_open].sum() == 0  # no history: flat at the open
    assert not np.allclose(cold.to_numpy(), vec.loc[cold.index].to_numpy())


def test_backtest_run_targets_are_the_vectorized_targets(bars):
    result = backtest.run("momentum_rotation", CASES["odd-buckets"], bars, warmup_sessions=1)
    live = backtest.replay(build("momentum_rotation", CASES["odd-buckets"]), bars, warmup_sessions=1)
    assert result.targets.index.equals(live.index)
    np.testing.assert_allclose(live.to_numpy(), result.targets.to_numpy(), rtol=0, atol=1e-9)
