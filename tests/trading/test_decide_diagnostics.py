"""Each decision records the strategy's declared diagnostics (per-symbol values) beside its targets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest

from openbell import backtest
from openbell.strategy import Bar, RiskGate, RiskLimits, build
from openbell.trading.decide import Decider
from openbell.trading.guard import StrategyGuard

SYMBOLS = ("TQQQ", "SQQQ")


class Recorder:
    """Keeps the diagnostics each decision is recorded with."""

    def __init__(self) -> None:
        self.scores: list[dict[str, float]] = []

    def decision(self, *args: Any) -> None:
        self.scores.append(args[8])


def warmed(spec: str, params: dict[str, Any]) -> Any:
    """The strategy after an hour of random-walk bars of SYMBOLS, fed through ``on_minute``."""
    rng = np.random.default_rng(2)
    stamps = pd.date_range("2024-03-12 13:30", periods=60, freq="min", tz="UTC")
    frames = []
    for symbol in SYMBOLS:
        close = 50 * np.exp(np.cumsum(rng.normal(0, 2e-3, len(stamps))))
        frames.append(pd.DataFrame({"timestamp": stamps, "symbol": symbol, "open": np.r_[50.0, close[:-1]],
                                    "close": close}))
    strategy = build(spec, params, SYMBOLS)
    backtest.replay(strategy, pd.concat(frames, ignore_index=True))
    return strategy


def decide_once(strategy: Any) -> dict[str, float]:
    """One traded minute through the decider, with stand-ins for the loop's other parts; what it recorded."""
    recorder = Recorder()
    t = datetime(2024, 3, 12, 15, 0, tzinfo=UTC)
    ctx = SimpleNamespace(recorder=recorder, report=SimpleNamespace(first_live_decision_at=None, decisions=0),
                          clock=SimpleNamespace(now=lambda: t), universe=SYMBOLS)
    portfolio = SimpleNamespace(prices={}, equity=lambda: 100_000.0, cash=100_000.0, gross_exposure=lambda: 0.0)
    params = SimpleNamespace(strategy=strategy, candidate=None, version_id=None)
    gate = SimpleNamespace(risk=SimpleNamespace(flattening=False), liquidating=False)
    dispatch = SimpleNamespace(gate=gate, place=lambda *a, **k: [])
    guard = StrategyGuard(ctx, RiskGate(RiskLimits()), budget=timedelta(seconds=20),  # type: ignore[arg-type]
                          reduce_after=5, on_reduce=print)
    decider = Decider(ctx, portfolio, guard, params, dispatch,  # type: ignore[arg-type]
                      SimpleNamespace(ok=True, out=None), trade_until=t + timedelta(hours=1), on_stop=print)
    bars = {s: Bar(s, t, 50.0, 50.0, 50.0, 50.0, 100.0) for s in SYMBOLS}
    decider.decide(t, bars, None, trade=True)
    assert ctx.report.decisions == 1 and guard.in_a_row == 0  # the strategy's output was taken
    return recorder.scores[0]


@pytest.mark.parametrize(("spec", "params"), [
    ("momentum_rotation", {"lookback": 5, "vol_window": 10, "rebalance_minutes": 1}),
    ("pair_rotation", {"lookback": 5, "vol_window": 10, "rebalance_minutes": 1}),
    ("ob_example:Leaders", {"lookback": 5}),
])
def test_the_decision_records_the_strategys_diagnostics(spec: str, params: dict[str, Any]) -> None:
    strategy = warmed(spec, params)
    recorded = decide_once(strategy)
    assert set(recorded) == set(SYMBOLS)
    assert recorded == strategy.diagnostics()  # type: ignore[attr-defined]


def test_momentums_diagnostics_are_its_scores() -> None:
    strategy = warmed("momentum_rotation", {"lookback": 5, "vol_window": 10, "rebalance_minutes": 1})
    decide_once(strategy)
    assert strategy.diagnostics() == strategy.last_scores != {}  # type: ignore[attr-defined]


def test_a_strategy_without_diagnostics_records_none() -> None:
    class Flat:
        name = "flat"

        def warmup(self, history: Any) -> None:
            pass

        def on_minute(self, ts: datetime, bars: Any) -> dict[str, float]:
            return {s: 0.0 for s in SYMBOLS}

    assert decide_once(Flat()) == {}
