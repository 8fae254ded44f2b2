"""Walk-forward optimizer: budget, determinism, incumbent protection (the defaults on day one)."""

from __future__ import annotations

import time
from datetime import date, datetime, timedelta

import pandas as pd
import pytest
from strategy_synth import make_bars

from openbell import midday, optimize
from openbell.calendar import session
from openbell.params import RunParams
from openbell.store import db
from openbell.store.bars import upsert_bars
from openbell.store.versions import add_params, latest_params
from openbell.strategy import InvalidParams, build

GOOD = {"lookback": 90, "vol_window": 90, "top_k": 2, "threshold": 1.0, "rebalance_minutes": 30,
        "weighting": "equal", "gross": 1.0}
NOISE = {"lookback": 2, "vol_window": 5, "threshold": 0.0, "exit_threshold": 10.0, "rebalance_minutes": 1}


class TickingClock:
    """Advances one second per reading."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


@pytest.fixture(scope="module")
def bars() -> pd.DataFrame:
    return make_bars(6, seed=21, drop=0.01)


def test_budget_stops_the_search(bars):
    res = optimize.optimize(bars, n_candidates=100, chunk_size=4, budget_s=3.0, clock=TickingClock(),
                            workers=1, seed=3)
    # start reads 1; chunks 2 and 3 are allowed at 2 and 3; the reading of 4 ends the budget
    assert res.evaluated == 12 and res.budget_exhausted
    full = optimize.optimize(bars, n_candidates=10, budget_s=1e9, clock=TickingClock(), workers=1, seed=3)
    assert full.evaluated == 10 and not full.budget_exhausted


def test_deterministic_for_a_seed(bars):
    a = optimize.optimize(bars, n_candidates=24, workers=1, seed=5, incumbent=GOOD)
    b = optimize.optimize(bars, n_candidates=24, workers=1, seed=5, incumbent=GOOD)
    assert a == b
    c = optimize.optimize(bars, n_candidates=24, workers=1, seed=6, incumbent=GOOD)
    assert [f.winner for f in c.folds] != [f.winner for f in a.folds] or c.best_params != a.best_params


def test_two_processes_give_the_same_answer(bars):
    serial = optimize.optimize(bars, n_candidates=32, workers=1, seed=8, incumbent=NOISE)
    pooled = optimize.optimize(bars, n_candidates=32, workers=2, seed=8, incumbent=NOISE)
    assert pooled == serial


def _search_in_a_daemon(bars, answers) -> None:  # type: ignore[no-untyped-def]
    try:
        answers.put(optimize.optimize(bars, n_candidates=32, workers=2, seed=8, incumbent=NOISE))
    except BaseException as exc:
        answers.put(f"{type(exc).__name__}: {exc}")


def test_the_search_runs_its_two_workers_in_a_daemonic_process(bars):
    """As on a Celery prefork worker, whose pool processes are daemonic and whose tasks inherit the flag."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    answers = ctx.Queue()
    child = ctx.Process(target=_search_in_a_daemon, args=(bars, answers), daemon=True)
    child.start()
    answer = answers.get(timeout=120)
    child.join(30)
    assert answer == optimize.optimize(bars, n_candidates=32, workers=1, seed=8, incumbent=NOISE), answer


def test_keeps_an_incumbent_that_is_better_out_of_sample():
    """Fast params win while minute returns persist; the regime turns and they lose out of sample."""
    bars = pd.concat([make_bars(4, seed=1, persistence=0.5, drift=0.0),
                      make_bars(2, seed=2, start=date(2024, 3, 12), persistence=-0.2, drift=1e-4)],
                     ignore_index=True)
    fast = {"lookback": (2, 4), "vol_window": (5, 8), "rebalance_minutes": (1, 2), "threshold": (0.0, 0.2)}
    res = optimize.optimize(bars, incumbent=GOOD, n_candidates=20, workers=1, seed=1, space=fast)
    assert res.best_params != res.incumbent_params
    assert res.in_sample > res.incumbent_in_sample  # a naive in-sample pick would replace it
    assert res.incumbent_out_of_sample > res.out_of_sample
    assert not res.beats_incumbent


def test_replaces_a_worse_incumbent(bars):
    res = optimize.optimize(bars, incumbent=NOISE, n_candidates=40, workers=1, seed=1, cost_bps=5.0)
    assert res.out_of_sample > res.incumbent_out_of_sample
    assert res.beats_incumbent and res.best_params != res.incumbent_params
    build("momentum_rotation", res.best_params)  # within the schema
    assert len(res.folds) == 2 and res.sessions[-1] == res.folds[-1].test_session
    assert res.folds[0].train_sessions == res.sessions[:3]


def test_refuses_bad_requests(bars):
    with pytest.raises(InvalidParams, match="lookback"):
        optimize.optimize(bars, space={"lookback": (1, 500)}, workers=1)
    with pytest.raises(InvalidParams, match="no searchable parameter 'speed'"):
        optimize.optimize(bars, space={"speed": (1, 2)}, workers=1)
    with pytest.raises(InvalidParams, match="top_k"):
        optimize.optimize(bars, incumbent={"top_k": 0}, workers=1)
    with pytest.raises(ValueError, match="need warmup"):
        optimize.optimize(bars, train_sessions=5, workers=1)
    with pytest.raises(ValueError, match="workers"):
        optimize.optimize(bars, workers=4)


def test_grid_search_covers_the_bounds():
    dims = optimize.search_space("momentum_rotation", {"lookback": (10, 50), "weighting": ["score"]})
    grid = optimize.candidates(dims, 10_000, seed=0, method="grid", grid_levels=2)
    assert {c["lookback"] for c in grid} == {10, 50}
    assert {c["weighting"] for c in grid} == {"score"}
    assert {c["gross"] for c in grid} == {0.5, 1.0}  # exclusive minimum 0 is never drawn
    for c in grid[:50]:
        build("momentum_rotation", c)


class MiddayClock:
    """14:30 ET on the last synthetic session, with all the wall time the search wants."""

    def __init__(self, now: datetime) -> None:
        self.t = now

    def now(self) -> datetime:
        return self.t

    def wall_deadline(self, t: datetime) -> float:
        return time.time() + 3600.0


def test_midday_on_day_one_keeps_the_defaults_unless_beaten(state_url: str) -> None:
    day = session(date(2024, 3, 13))
    assert day is not None
    engine = db.make_engine(state_url)
    try:
        upsert_bars(engine, make_bars(5, seed=2, start=date(2024, 3, 7), drop=0.01), source="rest")
        run = RunParams(optimize_sessions=4, optimize_budget_seconds=600)
        clock = MiddayClock(day.close - timedelta(minutes=90))

        first = midday.optimize_session(engine, day, clock, run, n_candidates=16)
        # no stored version: the defaults live trading runs are the incumbent, and they win here
        assert (first["incumbent"]["version"], first["incumbent"]["params"]) == (None, "defaults")
        assert first["incumbent"]["out_of_sample"] > first["best"]["out_of_sample"]
        assert not first["beats_incumbent"] and first["new_version"] is None
        assert latest_params(engine, "momentum_rotation") is None

        weak = add_params(engine, "momentum_rotation", NOISE, source="manual")
        second = midday.optimize_session(engine, day, clock, run, n_candidates=16)
        assert second["incumbent"]["version"] == weak.id and second["beats_incumbent"]
        assert second["new_version"] == latest_params(engine, "momentum_rotation").id != weak.id
    finally:
        engine.dispose()


def test_midday_leaves_parameters_the_run_fixed(state_url: str) -> None:
    """A run that sets strategy_params trades them all day (no version is loaded): no search, no version."""
    day = session(date(2024, 3, 13))
    assert day is not None
    engine = db.make_engine(state_url)
    try:
        run = RunParams(strategy_params=NOISE)
        summary = midday.optimize_session(engine, day, MiddayClock(day.close - timedelta(minutes=90)), run)
        assert summary["new_version"] is None and "fix the strategy's parameters" in summary["skipped"]
        assert latest_params(engine, "momentum_rotation") is None
    finally:
        engine.dispose()
