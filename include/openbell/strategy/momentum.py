"""``momentum_rotation``: hold the top-k symbols by risk-adjusted intraday momentum.

Score of a symbol at minute t: the sum of its gap-excluded log returns over the last ``lookback``
minutes divided by (realized volatility over ``vol_window`` minutes x sqrt(lookback)), i.e. a t-stat
of the recent move. Lookbacks run across session boundaries (the overnight gap itself is excluded,
see :mod:`openbell.strategy.data`), so warmup on prior sessions gives a score at the open.
A symbol is eligible when it has printed in the current session and in at least half of the
volatility window, and the strategy has seen at least max(lookback, vol_window) minutes.
Of each inverse pair only the better-scoring leg stays (neither on an exact tie). The top ``top_k``
scores above ``threshold`` are held; flat when none qualifies. Targets change only on the first
minute of each clock-aligned bucket of ``rebalance_minutes`` (New York time) and are held between.

The same functions (:func:`scores`, :func:`select_weights`, :func:`rebalance_keys`) compute the
live targets minute by minute and the vectorized targets of the backtest.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from openbell.strategy.base import DEFAULT_UNIVERSE, INVERSE_PAIRS, Bar, register
from openbell.strategy.data import MarketArrays, market_day_minute, prepare

log = logging.getLogger(__name__)


class MomentumParams(BaseModel):
    """Parameters of ``momentum_rotation``; bounds are part of the JSON schema."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    lookback: int = Field(30, ge=2, le=240, description="Minutes of return in the momentum score.")
    vol_window: int = Field(60, ge=5, le=390, description="Minutes of realized volatility.")
    top_k: int = Field(2, ge=1, le=6, description="Most symbols held at once.")
    threshold: float = Field(1.0, ge=0.0, le=10.0, description="Least score to hold a symbol.")
    rebalance_minutes: int = Field(5, ge=1, le=120, description="Clock bucket between rebalances.")
    weighting: Literal["equal", "score"] = Field("equal", description="Split of the gross among holdings.")
    gross: float = Field(1.0, gt=0.0, le=1.0, description="Exposure when all top_k slots are filled.")


def window_sums(csum: np.ndarray, rows: np.ndarray, n: int) -> np.ndarray:
    """Sums of the last ``n`` rows (fewer at the start) at ``rows``, from a cumulative sum."""
    out = csum[rows]
    back = rows - n
    ok = back >= 0
    out[ok] -= csum[back[ok]]
    return out


def _cached(cache: dict[Any, Any] | None, key: Any, make: Any) -> np.ndarray:
    if cache is None:
        return make()
    if key not in cache:
        cache[key] = make()
    return cache[key]


def scores(ret: np.ndarray, has: np.ndarray, fresh: np.ndarray, lookback: int, vol_window: int,
           first_row: int = 0, rows: np.ndarray | None = None,
           cache: dict[Any, Any] | None = None) -> np.ndarray:
    """Scores (NaN where ineligible) at ``rows`` (default all) of the (T,N) arrays.

    ``first_row`` is the absolute index of row 0 (live passes a buffer of recent rows); ``cache``
    keeps the cumulative sums of one set of arrays between calls.
    """
    c1 = _cached(cache, "ret", lambda: np.cumsum(ret, axis=0))
    c2 = _cached(cache, "ret2", lambda: np.cumsum(ret * ret, axis=0))
    ch = _cached(cache, "has", lambda: np.cumsum(has, axis=0, dtype=np.float64))
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
    """(P,2) column indices of the inverse pairs whose both legs are in the universe."""
    at = {s: i for i, s in enumerate(universe)}
    found = [(at[a], at[b]) for a, b in pairs if a in at and b in at]
    return np.array(found, dtype=np.intp).reshape(-1, 2)


def select_weights(s: np.ndarray, pairs: np.ndarray, p: MomentumParams) -> np.ndarray:
    """Target weights (R,N) from scores (R,N): pair exclusion, threshold, top-k, weighting."""
    s = s.copy()
    if len(pairs):
        a, b = pairs[:, 0], pairs[:, 1]
        sa, sb = s[:, a], s[:, b]
        s[:, a] = np.where(sb >= sa, np.nan, sa)  # comparisons with NaN are False
        s[:, b] = np.where(sa >= sb, np.nan, sb)
    qualify = s > p.threshold
    ranked = np.where(qualify, s, -np.inf)
    top = np.argsort(-ranked, axis=1, kind="stable")[:, : p.top_k]
    rows = np.arange(len(s))[:, None]
    chosen = np.zeros_like(qualify)
    chosen[rows, top] = qualify[rows, top]
    if p.weighting == "equal":
        return np.where(chosen, p.gross / p.top_k, 0.0)
    picked = np.where(chosen, s, 0.0)
    total = picked.sum(axis=1, keepdims=True)
    n_sel = chosen.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        w = picked / total * (p.gross * n_sel / p.top_k)
    return np.where(chosen, w, 0.0)


def rebalance_keys(day: np.ndarray | int, minute: np.ndarray | int, every: int) -> np.ndarray | int:
    """Clock bucket of a minute; targets are recomputed on the first minute of each bucket."""
    return day * 10_000 + minute // every  # type: ignore[operator]


@register
class MomentumRotation:
    """Live (``on_minute``) and vectorized (``vector_targets``) forms of the same signal."""

    name: ClassVar[str] = "momentum_rotation"
    Params: ClassVar[type[MomentumParams]] = MomentumParams

    def __init__(self, params: MomentumParams, universe: Sequence[str] = DEFAULT_UNIVERSE) -> None:
        if not isinstance(params, MomentumParams):
            raise TypeError("params must be MomentumParams; use openbell.strategy.build()")
        self.params = params
        self.universe = tuple(universe)
        if not self.universe or len(set(self.universe)) != len(self.universe):
            raise ValueError(f"universe must be non-empty and unique, got {self.universe}")
        self._at = {s: i for i, s in enumerate(self.universe)}
        self._pairs = pair_indices(self.universe)
        self._reset()

    # -- live -----------------------------------------------------------------
    def _reset(self) -> None:
        n = len(self.universe)
        self._window = max(self.params.lookback, self.params.vol_window)
        self._ret = np.zeros((self._window, n))
        self._has = np.zeros((self._window, n), dtype=bool)
        self._rows = 0
        self._last_close = np.full(n, np.nan)
        self._last_day = np.full(n, -1, dtype=np.int64)
        self._last_ts: datetime | None = None
        self._last_key: int | None = None
        self._held = np.zeros(n)
        self.last_scores: dict[str, float] = {}

    def warmup(self, history: pd.DataFrame) -> None:
        """Reset and absorb history minute by minute (same state as having run live through it).

        History without bars of the universe leaves the strategy freshly reset.
        """
        self._reset()
        if isinstance(history, pd.DataFrame) and (
            history.empty or ("symbol" in history and not history["symbol"].isin(self.universe).any())
        ):
            return
        data = prepare(history, self.universe)
        for t, ts in enumerate(data.times):
            self._step(ts.to_pydatetime(), int(data.day[t]), int(data.minute[t]),
                       data.open[t], data.close[t], data.has[t])

    def on_minute(self, ts: datetime, bars: Mapping[str, Bar]) -> dict[str, float]:
        """Absorb the bars of minute ``ts`` and return the target weight of every universe symbol."""
        day, minute = market_day_minute(ts)
        if self._last_ts is not None and ts <= self._last_ts:
            raise ValueError(f"minute {ts.isoformat()} is not after the last one {self._last_ts.isoformat()}")
        n = len(self.universe)
        opens, closes = np.full(n, np.nan), np.full(n, np.nan)
        for symbol, bar in bars.items():
            i = self._at.get(symbol)
            if i is None:
                continue
            o, c = float(bar.open), float(bar.close)
            if not (math.isfinite(o) and math.isfinite(c) and o > 0 and c > 0):
                log.warning("ignoring bar of %s at %s with open=%r close=%r", symbol, ts, bar.open, bar.close)
                continue
            opens[i], closes[i] = o, c
        self._step(ts, day, minute, opens, closes, ~np.isnan(closes))
        return self.targets()

    def targets(self) -> dict[str, float]:
        """The weights currently held as targets."""
        return {s: float(w) for s, w in zip(self.universe, self._held, strict=True)}

    def diagnostics(self) -> dict[str, float]:
        """The scores of the last rebalance, of the symbols that had one (recorded with each decision)."""
        return dict(self.last_scores)

    def _step(self, ts: datetime, day: int, minute: int, opens: np.ndarray, closes: np.ndarray,
              has: np.ndarray) -> None:
        same = has & (self._last_day == day)
        with np.errstate(invalid="ignore", divide="ignore"):
            first = np.where(has, np.log(closes / opens), 0.0)
            ret = np.where(same, np.log(closes / self._last_close), first)
        self._last_close = np.where(has, closes, self._last_close)
        self._last_day = np.where(has, day, self._last_day)
        self._ret = np.roll(self._ret, -1, axis=0)
        self._has = np.roll(self._has, -1, axis=0)
        self._ret[-1], self._has[-1] = ret, has
        self._rows += 1
        self._last_ts = ts
        key = int(rebalance_keys(day, minute, self.params.rebalance_minutes))
        if key == self._last_key:
            return
        self._last_key = key
        p = self.params
        fresh = np.broadcast_to(self._last_day == day, self._ret.shape)
        last = np.array([self._window - 1])
        s = scores(self._ret, self._has, fresh, p.lookback, p.vol_window,
                   first_row=self._rows - self._window, rows=last)
        self._held = select_weights(s, self._pairs, p)[0]
        self.last_scores = {sym: float(v) for sym, v in zip(self.universe, s[0], strict=True) if np.isfinite(v)}

    # -- vectorized -------------------------------------------------------------
    @classmethod
    def vector_targets(cls, data: MarketArrays, params: MomentumParams,
                       cache: dict[Any, Any] | None = None) -> np.ndarray:
        """Targets (T,N) after every minute of ``data``, computed on whole arrays at once."""
        keys = rebalance_keys(data.day, data.minute, params.rebalance_minutes)
        reb = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
        s = scores(data.ret, data.has, data.fresh, params.lookback, params.vol_window, rows=reb, cache=cache)
        w = select_weights(s, pair_indices(data.symbols), params)
        held = np.searchsorted(reb, np.arange(len(data.times)), side="right") - 1
        return w[held]
