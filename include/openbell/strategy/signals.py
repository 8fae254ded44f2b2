"""Array math the built-in strategies share: windowed sums, the risk-adjusted momentum score, the inverse
pairs of a universe and the clock buckets of a rebalance.

Every function works on (T,N) arrays, whole (the vectorized twins) or a buffer of recent minutes (live), so
both forms of a strategy compute their targets with the same code.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from openbell.strategy.base import INVERSE_PAIRS


def window_sums(csum: np.ndarray, rows: np.ndarray, n: int) -> np.ndarray:
    """Sums of the last ``n`` rows (fewer at the start) at ``rows``, from a cumulative sum."""
    out = csum[rows]
    back = rows - n
    ok = back >= 0
    out[ok] -= csum[back[ok]]
    return out


def cached(cache: dict[Any, Any] | None, key: Any, make: Callable[[], np.ndarray]) -> np.ndarray:
    """``make()``, kept in ``cache`` under ``key`` when there is a cache."""
    if cache is None:
        return make()
    if key not in cache:
        cache[key] = make()
    return cache[key]  # type: ignore[no-any-return]


def scores(ret: np.ndarray, has: np.ndarray, fresh: np.ndarray, lookback: int, vol_window: int,
           first_row: int = 0, rows: np.ndarray | None = None,
           cache: dict[Any, Any] | None = None) -> np.ndarray:
    """Risk-adjusted momentum (NaN where ineligible) at ``rows`` (default all) of the (T,N) arrays.

    A symbol's score is the sum of its log returns over the last ``lookback`` rows over (its realized
    volatility over ``vol_window`` rows x sqrt(lookback)), a t-stat of the recent move. It is eligible when
    it has printed in the current session (``fresh``) and in at least half of the volatility window, its
    volatility is positive and at least max(lookback, vol_window) rows have been seen. ``first_row`` is the
    absolute index of row 0 (live passes a buffer of recent rows); ``cache`` keeps the cumulative sums of one
    set of arrays between calls.
    """
    c1 = cached(cache, "ret", lambda: np.cumsum(ret, axis=0))
    c2 = cached(cache, "ret2", lambda: np.cumsum(ret * ret, axis=0))
    ch = cached(cache, "has", lambda: np.cumsum(has, axis=0, dtype=np.float64))
    idx = np.arange(len(ret)) if rows is None else rows
    mom = window_sums(c1, idx, lookback)
    s1 = window_sums(c1, idx, vol_window)
    s2 = window_sums(c2, idx, vol_window)
    count = window_sums(ch, idx, vol_window)
    vol = np.sqrt(np.maximum((s2 - s1 * s1 / vol_window) / (vol_window - 1), 0.0))
    enough = (first_row + idx + 1) >= max(lookback, vol_window)
    ok = enough[:, None] & fresh[idx] & (vol > 0.0) & (count >= math.ceil(vol_window / 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        s = mom / (vol * math.sqrt(lookback))
    return np.where(ok, s, np.nan)


def pair_indices(universe: Sequence[str], pairs: Sequence[tuple[str, str]] = INVERSE_PAIRS) -> np.ndarray:
    """(P,2) column indices (bull, bear) of the inverse pairs whose both legs are in the universe."""
    at = {s: i for i, s in enumerate(universe)}
    found = [(at[a], at[b]) for a, b in pairs if a in at and b in at]
    return np.array(found, dtype=np.intp).reshape(-1, 2)


def rebalance_keys(day: np.ndarray | int, minute: np.ndarray | int, every: int) -> np.ndarray | int:
    """Clock bucket of a minute; targets are recomputed on the first minute of each bucket."""
    return day * 10_000 + minute // every  # type: ignore[operator]


def rebalance_rows(day: np.ndarray, minute: np.ndarray, every: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows where a bucket starts, for every row the index in those rows of the bucket it belongs to)."""
    keys = rebalance_keys(day, minute, every)
    reb = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])  # type: ignore[index]
    return reb, np.searchsorted(reb, np.arange(len(day)), side="right") - 1
