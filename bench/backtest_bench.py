"""Backtest speed in bars per second, every registered strategy, over 20 sessions x 12 symbols x 390 minutes
of the simulator's market (built in-process): the vectorized twin and the replay of ``on_minute``.

bars = sessions x symbols x minutes, default params. Vectorized: the twin on prepared arrays
(:func:`openbell.strategy.data.prepare`, timed on its own), then with costs and P&L (what the optimizer
evaluates per candidate), then ``backtest.run`` from the bar frame (prepare included). Replayed:
:func:`openbell.strategy.replay.replay_targets` with the minutes' ``Bar`` objects built beforehand (as the
optimizer's cache keeps them), then ``backtest.replay`` from the bar frame, as the live loop feeds it.

Run: ``.venv/bin/python -m bench backtest_bench``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import date
from typing import Any

from openbell import backtest
from openbell.sim.market import LEVERAGED, bars_between
from openbell.sim.playback import session_minutes, sessions_between
from openbell.strategy import names, strategy_class, validate_params
from openbell.strategy.contract import vector_twin
from openbell.strategy.data import prepare
from openbell.strategy.replay import minute_bars, replay_targets

SESSIONS = 20
MINUTES = 390
START = date(2025, 9, 2)


def market() -> Any:
    """The simulator's bars of the 12 leveraged ETFs over the first SESSIONS full sessions (no early close)
    from START."""
    days = [s for s in sessions_between(START, date(2025, 12, 31)) if session_minutes(s) == MINUTES][:SESSIONS]
    assert len(days) == SESSIONS, days
    frame = bars_between(LEVERAGED, days[0].date, days[-1].date)
    assert len(frame) == SESSIONS * len(LEVERAGED) * MINUTES, len(frame)
    return frame


def best_of(fn: Callable[[], object], repeats: int) -> float:
    """The shortest wall time of ``repeats`` calls, in seconds."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def run(repeats: int = 5, replay_repeats: int = 2) -> list[tuple[str, float, str]]:
    """Time each strategy's vectorized and replayed targets; print and return bars/s figures."""
    bars = market()
    n = len(bars)
    figures: list[tuple[str, float, str]] = [("bars (20 sessions x 12 symbols x 390 minutes)", float(n), "bars")]
    data = prepare(bars, LEVERAGED)
    figures.append(("prepare (frame to arrays)", n / best_of(lambda: prepare(bars, LEVERAGED), repeats), "bars/s"))
    cache: dict[Any, Any] = {}
    figures.append(("minute bars (arrays to Bar objects, once)", n / best_of(lambda: minute_bars(data), 1), "bars/s"))
    minute_bars(data, cache)
    for name in names():
        cls, params = strategy_class(name), validate_params(name, None)
        if vector_twin(cls) is not None:
            vec = best_of(lambda cls=cls, params=params: cls.vector_targets(data, params), repeats)  # type: ignore[attr-defined]
            figures.append((f"{name} vectorized: vector_targets", n / vec, "bars/s"))
            scored = best_of(lambda cls=cls, params=params: backtest.simulate(
                data, cls.vector_targets(data, params), 1.0), repeats)  # type: ignore[attr-defined]
            figures.append((f"{name} vectorized: + costs and P&L (a candidate)", n / scored, "bars/s"))
        whole = best_of(lambda name=name: backtest.run(name, None, bars, universe=LEVERAGED), repeats)
        figures.append((f"{name} vectorized: backtest.run (frame in)", n / whole, "bars/s"))
        rep = best_of(lambda cls=cls, params=params: replay_targets(cls, data, params, cache), replay_repeats)
        figures.append((f"{name} replayed: on_minute (Bar objects built)", n / rep, "bars/s"))
        live = best_of(lambda cls=cls, params=params: backtest.replay(cls(params, LEVERAGED), bars), replay_repeats)
        figures.append((f"{name} replayed: backtest.replay (frame in)", n / live, "bars/s"))
    for figure, value, unit in figures:
        print(f"{figure:<56} {value:>14,.0f}  {unit}")
    return figures


if __name__ == "__main__":
    run()
