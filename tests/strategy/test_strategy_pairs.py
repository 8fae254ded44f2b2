"""pair_rotation: which leg of which pairs it holds, on hand-made bars, live and vectorized alike, and the
optimizer searching its params."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from strategy_synth import make_bars

from openbell import backtest, optimize
from openbell.strategy import DEFAULT_UNIVERSE, INVERSE_PAIRS, Bar, InvalidParams, build, diagnostics
from openbell.strategy.data import prepare
from openbell.strategy.pairs import PairParams, select_legs
from openbell.strategy.replay import minute_bars
from openbell.strategy.signals import pair_indices

U = DEFAULT_UNIVERSE
PAIRS = pair_indices(U)
OPEN = datetime(2024, 3, 12, 13, 30, tzinfo=UTC)  # 09:30 in New York
MINUTES = 20
FAST = {"lookback": 4, "vol_window": 6, "rebalance_minutes": 1, "threshold": 0.5, "top_pairs": 1}
RISE = [0.002, 0.001] * (MINUTES // 2)  # log returns per minute
FALL = [-r for r in RISE]
SLOW_RISE = [0.0004, 0.0001] * (MINUTES // 2)
CHOP = [0.001, -0.001] * (MINUTES // 2)


# -- the choice, on strengths ---------------------------------------------------------------------------


def strengths(**by_bull_leg: float) -> np.ndarray:
    """A row of signed pair strengths keyed by each pair's bull leg; NaN for the others."""
    bulls = [a for a, b in INVERSE_PAIRS]
    s = np.full((1, len(PAIRS)), np.nan)
    for sym, v in by_bull_leg.items():
        s[0, bulls.index(sym)] = v
    return s


def held(w: np.ndarray) -> dict[str, float]:
    return {U[i]: float(w[0, i]) for i in np.flatnonzero(w[0])}


def test_the_sign_picks_the_leg():
    p = PairParams(top_pairs=2, threshold=0.5)
    assert held(select_legs(strengths(TQQQ=2.0), PAIRS, len(U), p)) == {"TQQQ": 0.5}
    assert held(select_legs(strengths(TQQQ=-2.0), PAIRS, len(U), p)) == {"SQQQ": 0.5}
    assert held(select_legs(strengths(TQQQ=-2.0, ERX=1.5), PAIRS, len(U), p)) == {"SQQQ": 0.5, "ERX": 0.5}


def test_the_strongest_pairs_by_absolute_strength_above_the_threshold():
    p = PairParams(top_pairs=2, threshold=1.0, gross=0.8)
    w = select_legs(strengths(TQQQ=1.5, SSO=-3.0, TNA=2.0, FAS=-1.0, ERX=1.0, SVXY=float("nan")), PAIRS, len(U), p)
    assert held(w) == {"SDS": pytest.approx(0.4), "TNA": pytest.approx(0.4)}
    # exactly at the threshold is not above it; an empty slot stays in cash
    assert held(select_legs(strengths(TQQQ=1.0, SSO=-1.2), PAIRS, len(U), p)) == {"SDS": pytest.approx(0.4)}
    assert not select_legs(strengths(TQQQ=0.0, SSO=float("nan")), PAIRS, len(U), PairParams(threshold=0.0)).any()


def test_a_tie_goes_to_the_pair_listed_first():
    p = PairParams(top_pairs=1, threshold=0.5)
    assert held(select_legs(strengths(FAS=2.0, SSO=-2.0), PAIRS, len(U), p)) == {"SDS": 1.0}  # SSO/SDS is 2nd
    assert held(select_legs(strengths(ERX=2.0, TQQQ=2.0), PAIRS, len(U), p)) == {"TQQQ": 1.0}


def test_strength_weighting_splits_by_absolute_strength():
    p = PairParams(top_pairs=3, threshold=1.0, weighting="strength", gross=0.9)
    w = select_legs(strengths(ERX=3.0, TNA=-2.0, FAS=1.0), PAIRS, len(U), p)  # FAS is not above the threshold
    assert held(w) == {"ERX": pytest.approx(0.36), "TZA": pytest.approx(0.24)}
    assert w.sum() == pytest.approx(0.9 * 2 / 3)


# -- on hand-made bars ----------------------------------------------------------------------------------


def frame(paths: dict[str, list[float]], skip: tuple[str, ...] = ()) -> pd.DataFrame:
    """One session's bars from 09:30: each symbol of ``paths`` follows its log returns from 100; a pair's
    bear leg mirrors its bull leg; symbols in ``skip`` have no bars."""
    full = {**{b: [-r for r in paths[a]] for a, b in INVERSE_PAIRS if a in paths and b not in paths}, **paths}
    rows = []
    for sym, r in full.items():
        if sym in skip:
            continue
        closes = 100.0 * np.exp(np.cumsum(r))
        opens = np.r_[100.0, closes[:-1]]
        rows += [(OPEN + timedelta(minutes=m), sym, opens[m], closes[m]) for m in range(MINUTES)]
    return pd.DataFrame(rows, columns=["timestamp", "symbol", "open", "close"])


def chop_but(**bulls: list[float]) -> dict[str, list[float]]:
    """Every pair choppy (no direction) but the bull legs given."""
    return {a: bulls.get(a, CHOP) for a, _ in INVERSE_PAIRS}


def last_held(paths: dict[str, list[float]], params: dict, universe: tuple[str, ...] = U,
              skip: tuple[str, ...] = ()) -> dict[str, float]:
    """The weights held after the last minute, live; the vectorized twin agrees at every minute."""
    bars = frame(paths, skip)
    live = backtest.replay(build("pair_rotation", params, universe), bars)
    vec = backtest.vector_targets("pair_rotation", params, prepare(bars, universe))
    np.testing.assert_allclose(live.to_numpy(), vec, rtol=0, atol=1e-12)
    last = live.iloc[-1]
    return {s: float(w) for s, w in last.items() if w != 0}


def test_a_rising_bull_leg_is_held():
    assert last_held(chop_but(TQQQ=RISE), FAST) == {"TQQQ": 1.0}


def test_a_falling_bull_leg_gives_the_bear_leg():
    assert last_held(chop_but(FAS=FALL), FAST) == {"FAZ": 1.0}


def test_the_stronger_pair_wins_and_top_pairs_holds_more():
    paths = chop_but(TQQQ=SLOW_RISE, ERX=FALL)
    assert last_held(paths, FAST) == {"ERY": 1.0}
    assert last_held(paths, {**FAST, "top_pairs": 2}) == {"ERY": 0.5, "TQQQ": 0.5}
    # equal strengths: the pair listed first
    assert last_held(chop_but(TNA=RISE, SSO=RISE), FAST) == {"SSO": 1.0}


def test_below_the_threshold_or_without_direction_nothing_is_held():
    assert last_held(chop_but(), {**FAST, "top_pairs": 6}) == {}
    assert last_held(chop_but(TQQQ=RISE), {**FAST, "threshold": 10.0}) == {}


def test_a_pair_with_a_leg_outside_the_universe_is_never_held():
    paths = chop_but(TQQQ=RISE, SSO=SLOW_RISE)
    assert last_held(paths, FAST, universe=("TQQQ", "SSO", "SDS")) == {"SSO": 1.0}
    assert last_held(paths, FAST, universe=("TQQQ", "SSO", "FAS")) == {}  # no whole pair at all
    strategy = build("pair_rotation", FAST, ("TQQQ", "SSO", "SDS"))
    backtest.replay(strategy, frame(paths))
    assert set(diagnostics(strategy)) == {"SSO", "SDS"}


def test_a_pair_whose_other_leg_has_not_printed_today_is_skipped():
    assert last_held(chop_but(TQQQ=FALL), FAST, skip=("SQQQ",)) == {}
    assert last_held(chop_but(TQQQ=RISE), FAST, skip=("SQQQ",)) == {}
    assert last_held(chop_but(TQQQ=RISE), FAST, skip=("TQQQ",)) == {}


def test_a_bar_without_a_usable_price_counts_as_no_bar(caplog: pytest.LogCaptureFixture):
    bars = frame(chop_but(TQQQ=RISE))
    minutes = minute_bars(prepare(bars, U))
    clean, spoiled = build("pair_rotation", FAST), build("pair_rotation", FAST)
    for m, (ts, minute) in enumerate(minutes):
        if m in (9, 15):
            gone = {s: b for s, b in minute.items() if s != "TQQQ"}
            nan = math.nan if m == 9 else 0.0
            bad = {**gone, "TQQQ": Bar("TQQQ", ts, 100.0, 100.0, 100.0, nan, 1.0)}
            assert clean.on_minute(ts, gone) == spoiled.on_minute(ts, bad)
        else:
            assert clean.on_minute(ts, minute) == spoiled.on_minute(ts, minute)
        assert clean.diagnostics() == spoiled.diagnostics()
    assert "ignoring bar of TQQQ" in caplog.text
    assert clean.targets()["TQQQ"] == 1.0


def test_diagnostics_are_each_pairs_strength_by_leg():
    strategy = build("pair_rotation", FAST)
    backtest.replay(strategy, frame(chop_but(TQQQ=RISE, FAS=FALL)))
    values = diagnostics(strategy)
    assert set(values) == set(U)
    for bull, bear in INVERSE_PAIRS:
        assert values[bear] == -values[bull]
    r = np.array(RISE)
    expected = r[-4:].sum() / (r[-6:].std(ddof=1) * math.sqrt(4))
    assert values["TQQQ"] == pytest.approx(expected, rel=1e-9) and values["FAS"] == pytest.approx(-expected)
    assert abs(values["SSO"]) < 1e-6


def test_warmup_reaches_the_state_of_the_minutes_it_absorbs():
    bars = frame(chop_but(TQQQ=RISE))
    fed = build("pair_rotation", FAST)
    backtest.replay(fed, bars)
    warmed = build("pair_rotation", FAST)
    warmed.warmup(bars)
    assert warmed.targets() == fed.targets() and warmed.diagnostics() == fed.diagnostics()


# -- params and the optimizer ---------------------------------------------------------------------------


def test_params_have_bounds_the_optimizer_searches():
    props = PairParams.model_json_schema()["properties"]
    assert props["top_pairs"]["minimum"] == 1 and props["top_pairs"]["maximum"] == 6
    assert props["weighting"]["enum"] == ["equal", "strength"]
    dims = optimize.search_space("pair_rotation")
    assert set(dims) == {"lookback", "vol_window", "top_pairs", "threshold", "rebalance_minutes", "weighting",
                         "gross"}
    with pytest.raises(InvalidParams, match="top_pairs"):
        build("pair_rotation", {"top_pairs": 7})
    with pytest.raises(InvalidParams, match="top_pairs"):
        optimize.search_space("pair_rotation", {"top_pairs": (1, 7)})


def test_the_optimizer_searches_pair_rotation():
    bars = make_bars(5, seed=4, drop=0.01)
    incumbent = {"lookback": 60, "vol_window": 90, "rebalance_minutes": 15}
    res = optimize.optimize(bars, strategy="pair_rotation", incumbent=incumbent, n_candidates=12, workers=1,
                            seed=2, train_sessions=2, budget_s=1e9)
    # the 12 candidates drawn within the schema's bounds, and the incumbent
    assert res.strategy == "pair_rotation" and res.evaluated == 13 and not res.budget_exhausted
    assert res.incumbent_params == PairParams(**incumbent).model_dump()
    assert len(res.folds) == 2 and all(math.isfinite(f.test_score) for f in res.folds)
    assert isinstance(build("pair_rotation", res.best_params).params, PairParams)
    narrowed = optimize.optimize(bars, strategy="pair_rotation", n_candidates=6, workers=1, seed=2,
                                 train_sessions=2, space={"top_pairs": (3, 3), "weighting": ["strength"]})
    assert narrowed.best_params["top_pairs"] == 3 and narrowed.best_params["weighting"] == "strength"
