"""Live/backtest parity, for every registered strategy: ``on_minute`` replayed (from the bar frame, as the
live loop feeds it, and over the prepared arrays, as the backtest does without a twin) gives the vectorized
twin's targets at every minute."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from strategy_synth import make_bars

from openbell import backtest
from openbell.strategy import build, names, strategy_class, validate_params
from openbell.strategy.contract import vector_twin
from openbell.strategy.data import prepare
from openbell.strategy.replay import replay_targets

# Each strategy runs its defaults; these add cases of its own (windows across sessions, odd buckets).
EXTRA_CASES: dict[str, dict[str, dict]] = {
    "momentum_rotation": {
        "long-windows-cross-sessions": {
            "lookback": 240, "vol_window": 390, "top_k": 3, "threshold": 0.5, "rebalance_minutes": 1,
            "weighting": "score",
        },
        "odd-buckets": {"lookback": 7, "vol_window": 13, "top_k": 6, "threshold": 0.0, "rebalance_minutes": 7},
    },
    "pair_rotation": {
        "long-windows-strength-every-minute": {
            "lookback": 240, "vol_window": 390, "top_pairs": 3, "threshold": 0.5, "rebalance_minutes": 1,
            "weighting": "strength",
        },
        "odd-buckets-all-pairs": {"lookback": 7, "vol_window": 13, "top_pairs": 6, "threshold": 0.0,
                                  "rebalance_minutes": 7},
    },
}
CASES = [(strategy, case, params) for strategy in names()
         for case, params in {"defaults": {}, **EXTRA_CASES.get(strategy, {})}.items()]
IDS = [f"{strategy}-{case}" for strategy, case, _ in CASES]
MOMENTUM = EXTRA_CASES["momentum_rotation"]


@pytest.fixture(scope="module")
def bars() -> pd.DataFrame:
    return make_bars(4, seed=11)


def vectorized(strategy: str, params: dict, bars: pd.DataFrame) -> pd.DataFrame:
    data = prepare(bars, build(strategy, params).universe)
    w = backtest.vector_targets(strategy, params, data)
    return pd.DataFrame(w, index=data.times, columns=list(data.symbols))


def twinned(strategy: str) -> None:
    if vector_twin(strategy_class(strategy)) is None:
        pytest.skip(f"{strategy} has no vectorized twin: the backtest replays on_minute")


def assert_same(live: pd.DataFrame, vec: pd.DataFrame) -> None:
    expected = vec.loc[live.index]
    assert len(live) > 200
    assert list(live.columns) == list(expected.columns)
    np.testing.assert_allclose(live.to_numpy(), expected.to_numpy(), rtol=0, atol=1e-9)
    # the comparison is not vacuous: positions are taken and change over time
    assert (live.to_numpy() > 0).any()
    assert len({tuple(r) for r in live.to_numpy().round(12)}) > 5


@pytest.mark.parametrize(("strategy", "case", "params"), CASES, ids=IDS)
@pytest.mark.parametrize("warmup_sessions", [0, 1, 2])
def test_replay_matches_vectorized_after_session_warmup(bars, strategy, case, params, warmup_sessions):
    twinned(strategy)
    live = backtest.replay(build(strategy, params), bars, warmup_sessions=warmup_sessions)
    assert_same(live, vectorized(strategy, params, bars))


@pytest.mark.parametrize(("strategy", "case", "params"), CASES, ids=IDS)
def test_the_replay_over_prepared_arrays_matches_the_twin(bars, strategy, case, params):
    """What the backtest and the optimizer compute for a strategy without a twin is the twin's answer."""
    twinned(strategy)
    cls = strategy_class(strategy)
    data = prepare(bars, build(strategy, params).universe)
    replayed = replay_targets(cls, data, validate_params(strategy, params))
    assert_same(pd.DataFrame(replayed, index=data.times, columns=list(data.symbols)),
                vectorized(strategy, params, bars))


@pytest.mark.parametrize(("strategy", "case", "params"), CASES, ids=IDS)
def test_restart_mid_session_warms_up_to_the_same_state(bars, strategy, case, params):
    """A restart (or hot reload) at 11:17 ET warms up on prior sessions plus today so far."""
    twinned(strategy)
    restart = pd.Timestamp("2024-03-11 11:17", tz="America/New_York")
    live = backtest.replay(build(strategy, params), bars, warmup_until=restart)
    assert live.index[0] == restart
    assert_same(live, vectorized(strategy, params, bars))


def test_lookbacks_cross_the_overnight_gap(bars):
    """With warmup, long windows score at the open; without the prior session they cannot."""
    params = MOMENTUM["long-windows-cross-sessions"]
    vec = vectorized("momentum_rotation", params, bars)
    data = prepare(bars, list(vec.columns))
    second_open = data.times[data.session_starts[1]]
    assert vec.loc[second_open].sum() > 0

    cold = backtest.replay(build("momentum_rotation", params), bars[bars["timestamp"] >= second_open])
    assert cold.loc[second_open].sum() == 0  # no history: flat at the open
    assert not np.allclose(cold.to_numpy(), vec.loc[cold.index].to_numpy())


def test_backtest_run_targets_are_the_vectorized_targets(bars):
    result = backtest.run("momentum_rotation", MOMENTUM["odd-buckets"], bars, warmup_sessions=1)
    live = backtest.replay(build("momentum_rotation", MOMENTUM["odd-buckets"]), bars, warmup_sessions=1)
    assert result.targets.index.equals(live.index)
    np.testing.assert_allclose(live.to_numpy(), result.targets.to_numpy(), rtol=0, atol=1e-9)
