"""Late trades that correct bars: a share of minute bars is re-sent on ``updatedBars`` about 30 market
seconds after the bar itself, and REST serves the corrected bar from then on.

A correction adds a late-reported trade: more volume and trades, a high or low stretched to its price,
a volume-weighted price moved toward it and, half of the time, the close at its price. Which bars are
corrected and how depends only on ``(seed, symbol, date)``; a larger share corrects a superset of the
bars a smaller share corrects.
"""

from __future__ import annotations

from datetime import date

import numpy as np

from openbell.sim.market import NS_PER_MIN, SessionBars, rng, round_prices

LATE_NS = 30_000_000_000  # a correction follows its bar by 30 market seconds
VISIBLE_AFTER_NS = NS_PER_MIN + LATE_NS  # from the bar's start to its correction


def correct(symbol: str, day: date, seed: int, share: float, bars: SessionBars) -> tuple[np.ndarray, SessionBars]:
    """(mask of corrected bars, the bars with corrections applied) for one session of one symbol."""
    n = len(bars)
    g = rng(seed, "corrections", symbol.upper(), day.toordinal())
    pick, extra, z, moves_close = g.random(n), 0.02 + 0.25 * g.random(n), g.standard_normal(n), g.random(n) < 0.5
    mask = pick < share
    if not mask.any():
        return mask, bars
    spread = np.maximum(bars.h - bars.l, bars.c * 0.0005)
    late = round_prices(np.maximum(bars.c + 0.5 * z * spread, np.where(bars.c >= 1.0, 0.01, 0.0001)))
    late_v = np.maximum(1, np.round(bars.v * extra)).astype(np.int64)
    v = bars.v + late_v
    h, lo = np.maximum(bars.h, late), np.minimum(bars.l, late)
    c = np.where(moves_close, late, bars.c)
    vw = np.clip(np.round((bars.vw * bars.v + late * late_v) / v, 4), lo, h)
    n_trades = bars.n + np.maximum(1, np.round(bars.n * extra)).astype(np.int64)
    out = SessionBars(
        bars.t, bars.o, np.where(mask, h, bars.h), np.where(mask, lo, bars.l), np.where(mask, c, bars.c),
        np.where(mask, v, bars.v), np.where(mask, n_trades, bars.n), np.where(mask, vw, bars.vw),
    )
    return mask, out
