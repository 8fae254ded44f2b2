"""Deterministic synthetic minute bars: six leveraged/inverse pairs on trending random walks."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from openbell.strategy import INVERSE_PAIRS

NY = ZoneInfo("America/New_York")


def weekdays(start: date, n: int) -> list[date]:
    days, d = [], start
    while len(days) < n:
        if d.weekday() < 5:
            days.append(d)
        d += timedelta(days=1)
    return days


def make_bars(sessions: int = 4, *, seed: int = 7, minutes: int = 390, start: date = date(2024, 3, 6),
              drop: float = 0.03, persistence: float = 0.15, drift: float = 1e-4,
              late_symbol: str | None = "UVXY") -> pd.DataFrame:
    """Long frame (timestamp UTC, symbol, open, high, low, close, volume).

    Each pair follows one factor with autocorrelated minute returns and a drift drawn per session and
    half-session (``drift`` is its scale), +3x and -3x with
    idiosyncratic noise; sessions open with an overnight gap; ``drop`` of bars are missing at random;
    ``late_symbol`` has no bars in the first 20 minutes of each session. The default start spans the
    2024 switch to daylight saving time.
    """
    rng = np.random.default_rng(seed)
    px = {s: 50.0 + 10 * i for i, s in enumerate(sorted({s for p in INVERSE_PAIRS for s in p}))}
    rows = []
    for day in weekdays(start, sessions):
        open_dt = datetime.combine(day, time(9, 30), NY)
        stamps = [(open_dt + timedelta(minutes=m)).astimezone(ZoneInfo("UTC")) for m in range(minutes)]
        for long_leg, short_leg in INVERSE_PAIRS:
            eps = rng.normal(0.0, 4e-4, minutes)
            half = minutes // 2
            eps[:half] += rng.normal(0.0, drift)
            eps[half:] += rng.normal(0.0, drift)
            f = np.empty(minutes)
            prev = rng.normal(0.0, 2e-4)
            for m in range(minutes):
                prev = persistence * prev + eps[m]
                f[m] = prev
            gap = rng.normal(0.0, 0.01)
            for sym, lev in ((long_leg, 3.0), (short_leg, -3.0)):
                r = lev * f + rng.normal(0.0, 2e-4, minutes)
                p0 = px[sym] * np.exp(lev * gap)
                closes = p0 * np.exp(np.cumsum(r))
                opens = np.r_[p0, closes[:-1]] * np.exp(rng.normal(0.0, 5e-5, minutes))
                keep = rng.random(minutes) >= drop
                if sym == late_symbol:
                    keep[:20] = False
                for m in np.flatnonzero(keep):
                    o, c = opens[m], closes[m]
                    rows.append((stamps[m], sym, o, max(o, c) * 1.0002, min(o, c) * 0.9998, c, 1000.0))
                px[sym] = closes[-1]
    frame = pd.DataFrame(rows, columns=["timestamp", "symbol", "open", "high", "low", "close", "volume"])
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
    return frame.sort_values(["timestamp", "symbol"], ignore_index=True)
