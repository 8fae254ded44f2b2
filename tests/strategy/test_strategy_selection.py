"""momentum_rotation's choice of holdings: pairs, top-k, threshold, flat, carry-forward."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from strategy_synth import make_bars

from openbell import backtest
from openbell.strategy import DEFAULT_UNIVERSE, INVERSE_PAIRS, Bar, build
from openbell.strategy.data import prepare
from openbell.strategy.momentum import MomentumParams, pair_indices, select_weights

U = DEFAULT_UNIVERSE
PAIRS = pair_indices(U)


def row(**scores: float) -> np.ndarray:
    s = np.full((1, len(U)), np.nan)
    for sym, v in scores.items():
        s[0, U.index(sym)] = v
    return s


def held(w: np.ndarray) -> dict[str, float]:
    return {U[i]: float(w[0, i]) for i in np.flatnonzero(w[0])}


def test_keeps_only_the_better_leg_of_a_pair():
    p = MomentumParams(top_k=3, threshold=0.5)
    assert held(select_weights(row(TQQQ=2.0, SQQQ=1.5), PAIRS, p)) == {"TQQQ": pytest.approx(1 / 3)}
    assert held(select_weights(row(TQQQ=0.7, SQQQ=1.5), PAIRS, p)) == {"SQQQ": pytest.approx(1 / 3)}
    # the better leg is below threshold: the other leg is not held instead
    assert held(select_weights(row(TQQQ=0.4, SQQQ=0.2), PAIRS, p)) == {}
    # an exact tie is no better leg: neither
    assert held(select_weights(row(SSO=2.0, SDS=2.0), PAIRS, p)) == {}
    # one leg without a score leaves the other
    assert held(select_weights(row(FAZ=1.2), PAIRS, p)) == {"FAZ": pytest.approx(1 / 3)}


def test_top_k_above_threshold_equal_weight():
    p = MomentumParams(top_k=2, threshold=1.0, gross=0.8)
    w = select_weights(row(ERX=3.0, TNA=2.5, FAS=1.2, SVXY=0.9, SSO=float("nan")), PAIRS, p)
    assert held(w) == {"ERX": pytest.approx(0.4), "TNA": pytest.approx(0.4)}
    # fewer qualifying than slots: the empty slot stays in cash
    w = select_weights(row(ERX=3.0, TNA=0.99), PAIRS, p)
    assert held(w) == {"ERX": pytest.approx(0.4)}


def test_score_weighting_splits_by_score():
    p = MomentumParams(top_k=3, threshold=1.0, weighting="score", gross=0.9)
    w = select_weights(row(ERX=3.0, TNA=2.0, FAS=1.0), PAIRS, p)  # FAS is not above threshold
    assert held(w) == {"ERX": pytest.approx(0.36), "TNA": pytest.approx(0.24)}
    assert w.sum() == pytest.approx(0.9 * 2 / 3)


def test_flat_when_nothing_qualifies():
    p = MomentumParams(top_k=6, threshold=1.0)
    assert not select_weights(row(ERX=0.5, TNA=-3.0, FAS=1.0), PAIRS, p).any()
    assert not select_weights(row(), PAIRS, p).any()


def rows(*scores: dict[str, float]) -> np.ndarray:
    return np.vstack([row(**r) for r in scores])


def names(w: np.ndarray) -> list[set[str]]:
    return [{U[i] for i in np.flatnonzero(r)} for r in w]


def test_a_chosen_symbol_keeps_its_slot_while_it_stays_above_the_exit_threshold():
    p = MomentumParams(top_k=1, threshold=1.0, exit_threshold=0.5)
    s = rows({"ERX": 1.5, "TNA": 1.2}, {"ERX": 0.6, "TNA": 3.0}, {"ERX": 0.5, "TNA": 3.0}, {"ERX": 2.0, "TNA": 2.5})
    # a newcomer scoring higher does not displace it; at or below exit_threshold it leaves for the best other
    assert names(select_weights(s, PAIRS, p, days=np.zeros(4))) == [{"ERX"}, {"ERX"}, {"TNA"}, {"TNA"}]
    # without the rows before (each row a session of its own): always the best above threshold
    assert names(select_weights(s, PAIRS, p)) == [{"ERX"}, {"TNA"}, {"TNA"}, {"TNA"}]


def test_each_session_starts_with_nothing_chosen():
    p = MomentumParams(top_k=1, threshold=1.0)
    s = rows({"ERX": 1.5, "TNA": 1.2}, {"ERX": 1.4, "TNA": 2.0})
    assert names(select_weights(s, PAIRS, p, days=np.array([0, 0]))) == [{"ERX"}, {"ERX"}]
    assert names(select_weights(s, PAIRS, p, days=np.array([0, 1]))) == [{"ERX"}, {"TNA"}]
    # what was chosen at the rebalance before the first row stays, as live trading carries it
    held = np.zeros(len(U), dtype=bool)
    held[U.index("TNA")] = True
    assert names(select_weights(row(ERX=3.0, TNA=0.2), PAIRS, p, held=held)) == [{"TNA"}]


def test_a_kept_symbol_whose_pair_leg_scores_better_leaves():
    p = MomentumParams(top_k=2, threshold=1.0, exit_threshold=0.0)
    s = rows({"TQQQ": 1.5}, {"TQQQ": 0.8, "SQQQ": 1.1})
    assert names(select_weights(s, PAIRS, p, days=np.zeros(2))) == [{"TQQQ"}, {"SQQQ"}]


def test_the_buffer_halves_the_turnover_of_the_rotation(synthetic):
    _, data = synthetic
    def changes(params: dict) -> int:
        w = backtest.vector_targets("momentum_rotation", params, data)
        return int((np.abs(np.diff(w, axis=0)) > 1e-12).sum())
    rotation = changes({"top_k": 2, "threshold": 0.5, "exit_threshold": 10.0, "rebalance_minutes": 1})
    buffered = changes({"top_k": 2, "threshold": 0.5, "exit_threshold": 0.0, "rebalance_minutes": 1})
    assert rotation > 50 and buffered < rotation / 2, (rotation, buffered)


@pytest.fixture(scope="module")
def synthetic() -> tuple[pd.DataFrame, object]:
    bars = make_bars(3, seed=5)
    return bars, prepare(bars, U)


@pytest.mark.parametrize("params", [{"top_k": 6, "threshold": 0.0, "rebalance_minutes": 1},
                                    {"top_k": 3, "weighting": "score", "threshold": 0.2}])
def test_never_both_legs_and_at_most_top_k(synthetic, params):
    _, data = synthetic
    w = backtest.vector_targets("momentum_rotation", params, data)
    for a, b in INVERSE_PAIRS:
        both = (w[:, U.index(a)] > 0) & (w[:, U.index(b)] > 0)
        assert not both.any(), f"{a} and {b} held together"
    counts = (w > 0).sum(axis=1)
    assert counts.max() <= params["top_k"]
    assert counts.max() >= 2  # several holdings do happen
    assert (w >= 0).all() and w.sum(axis=1).max() <= 1.0 + 1e-12


def test_threshold_out_of_reach_is_always_flat(synthetic):
    _, data = synthetic
    assert not backtest.vector_targets("momentum_rotation", {"threshold": 10.0}, data).any()


def test_symbol_not_yet_printing_today_is_not_held(synthetic):
    """UVXY has no bars in the first 20 minutes of each session: it is not held then."""
    _, data = synthetic
    w = backtest.vector_targets("momentum_rotation", {"top_k": 6, "threshold": 0.0, "rebalance_minutes": 1},
                                data)
    uvxy = U.index("UVXY")
    minute_in_session = np.arange(len(data.times)) - data.session_starts[data.session]
    assert not w[minute_in_session < 20, uvxy].any()
    assert w[minute_in_session >= 20, uvxy].any()


def test_missing_bar_carries_the_last_price():
    t0 = pd.Timestamp("2024-03-06 14:30", tz="UTC")
    bars = pd.DataFrame({
        "timestamp": [t0, t0, t0 + pd.Timedelta(minutes=1), t0 + pd.Timedelta(minutes=2),
                      t0 + pd.Timedelta(minutes=2)],
        "symbol": ["ERX", "TNA", "TNA", "ERX", "TNA"],
        "open": [10.0, 20.0, 20.0, 10.0, 21.0],
        "close": [10.0, 20.0, 21.0, 11.0, 21.0],
    })
    data = prepare(bars, ("ERX", "TNA"))
    assert list(data.has[:, 0]) == [True, False, True]
    assert data.ret[1, 0] == 0.0 and data.pnl[1, 0] == 0.0
    assert data.pnl[2, 0] == pytest.approx(0.1)  # 10 carried through minute 1, then 11
    assert data.ret[2, 0] == pytest.approx(np.log(1.1))


def trending_minute_bars(day: datetime, drift: dict[str, float], rng: np.random.Generator,
                         prices: dict[str, float], skip: str | None = None) -> list[tuple[datetime, dict]]:
    out = []
    for m in range(390):
        ts = day + timedelta(minutes=m)
        minute = {}
        for sym in U:
            if sym == skip and m % 3 == 0:
                continue
            o = prices[sym]
            c = o * float(np.exp(drift.get(sym, 0.0) + rng.normal(0.0, 1e-3)))
            prices[sym] = c
            minute[sym] = Bar(sym, ts, o, max(o, c), min(o, c), c, 100.0)
        out.append((ts, minute))
    return out


def test_live_strategy_holds_the_trending_leg_not_its_inverse():
    rng = np.random.default_rng(3)
    prices = dict.fromkeys(U, 50.0)
    strategy = build("momentum_rotation", {"top_k": 1, "lookback": 60, "vol_window": 60, "threshold": 1.0})
    drift = {"TQQQ": 8e-4, "SQQQ": -8e-4}
    targets: dict[str, float] = {}
    for ts, minute in trending_minute_bars(datetime(2024, 3, 6, 14, 30, tzinfo=UTC), drift, rng, prices,
                                           skip="ERX"):
        targets = strategy.on_minute(ts, minute)
    assert set(targets) == set(U)
    assert targets["TQQQ"] == pytest.approx(1.0)
    assert sum(targets.values()) == pytest.approx(1.0)


def test_live_strategy_refuses_minutes_out_of_order():
    strategy = build("momentum_rotation")
    ts = datetime(2024, 3, 6, 14, 30, tzinfo=UTC)
    bar = Bar("ERX", ts, 10.0, 10.0, 10.0, 10.0, 1.0)
    strategy.on_minute(ts, {"ERX": bar})
    with pytest.raises(ValueError, match="not after"):
        strategy.on_minute(ts, {"ERX": bar})
    with pytest.raises(ValueError, match="timezone-aware"):
        strategy.on_minute(datetime(2024, 3, 6, 14, 40), {})


def test_warmup_on_empty_history_is_a_fresh_start():
    strategy = build("momentum_rotation")
    empty = pd.DataFrame(columns=["timestamp", "symbol", "open", "high", "low", "close", "volume"])
    strategy.warmup(empty)
    assert not any(strategy.targets().values()) and strategy.last_scores == {}


def test_live_scores_are_published_at_rebalance():
    rng = np.random.default_rng(9)
    prices = dict.fromkeys(U, 50.0)
    strategy = build("momentum_rotation", {"lookback": 30, "vol_window": 30})
    for ts, minute in trending_minute_bars(datetime(2024, 3, 6, 14, 30, tzinfo=UTC), {"TNA": 8e-4}, rng,
                                           prices):
        strategy.on_minute(ts, minute)
    assert set(strategy.last_scores) == set(U)
    assert max(strategy.last_scores, key=strategy.last_scores.get) == "TNA"
