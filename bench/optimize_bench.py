"""Optimizer throughput: parameter sets evaluated per second over 20 sessions x 12 symbols.

Run: .venv/bin/python bench/optimize_bench.py [budget_seconds]
"""

from __future__ import annotations

import sys
import time
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from openbell import optimize
from openbell.strategy import DEFAULT_UNIVERSE

SESSIONS = 20
MINUTES = 390


def generate(sessions: int = SESSIONS, seed: int = 0) -> pd.DataFrame:
    """Random-walk minute bars for the default universe, one row per symbol and minute."""
    rng = np.random.default_rng(seed)
    ny, utc = ZoneInfo("America/New_York"), ZoneInfo("UTC")
    days: list[date] = []
    d = date(2024, 2, 1)
    while len(days) < sessions:
        if d.weekday() < 5:
            days.append(d)
        d += timedelta(days=1)
    stamps = pd.DatetimeIndex([
        datetime(x.year, x.month, x.day, 9, 30, tzinfo=ny).astimezone(utc) + timedelta(minutes=m)
        for x in days for m in range(MINUTES)
    ])
    n = len(DEFAULT_UNIVERSE)
    r = rng.normal(0.0, 8e-4, (len(stamps), n))
    closes = 40.0 * np.exp(np.cumsum(r, axis=0))
    opens = np.vstack([closes[:1], closes[:-1]])
    return pd.DataFrame({
        "timestamp": np.repeat(stamps, n),
        "symbol": np.tile(DEFAULT_UNIVERSE, len(stamps)),
        "open": opens.ravel(), "high": np.maximum(opens, closes).ravel(),
        "low": np.minimum(opens, closes).ravel(), "close": closes.ravel(), "volume": 1000.0,
    })


def run(budget_s: float = 60.0, n_candidates: int = 20_000) -> list[tuple[str, float, str]]:
    """Search on 2 processes until the budget (or the candidates) run out; print and return figures."""
    bars = generate()
    started = time.monotonic()
    result = optimize.optimize(bars, n_candidates=n_candidates, budget_s=budget_s, workers=2,
                               train_sessions=5, warmup_sessions=1, seed=1, chunk_size=16)
    elapsed = time.monotonic() - started
    figures = [
        ("bars", float(len(bars)), "bars"),
        ("sets evaluated", float(result.evaluated), f"sets in {elapsed:.1f} s (budget {budget_s:.0f} s)"),
        ("throughput", result.evaluated / elapsed, "sets/s on 2 processes"),
        ("budget exhausted", float(result.budget_exhausted), "bool"),
    ]
    for name, value, unit in figures:
        print(f"{name:<18} {value:>12.1f}  {unit}")
    print(optimize.describe(result))
    return figures


if __name__ == "__main__":
    run(float(sys.argv[1]) if len(sys.argv) > 1 else 60.0)
