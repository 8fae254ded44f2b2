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

The same functions (:func:`~openbell.strategy.signals.scores`, :func:`select_weights`) compute the live
targets minute by minute (:class:`~openbell.strategy.rolling.RollingStrategy`) and the vectorized targets
of the backtest.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from openbell.strategy.base import register
from openbell.strategy.data import MarketArrays
from openbell.strategy.rolling import RollingStrategy
from openbell.strategy.signals import pair_indices, rebalance_rows, scores

__all__ = ["MomentumParams", "MomentumRotation", "pair_indices", "scores", "select_weights"]


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


@register
class MomentumRotation(RollingStrategy):
    """Live (``on_minute``) and vectorized (``vector_targets``) forms of the same signal."""

    name: ClassVar[str] = "momentum_rotation"
    Params: ClassVar[type[MomentumParams]] = MomentumParams

    def _rebalance(self, day: int) -> tuple[np.ndarray, dict[str, float]]:
        """Weights from the scores at the window's last row; the scores are the diagnostics."""
        p, w = self.params, self._window
        fresh = np.broadcast_to(w.fresh(day), w.ret.shape)
        s = scores(w.ret, w.has, fresh, p.lookback, p.vol_window, first_row=w.first_row, rows=np.array([w.size - 1]))
        values = {sym: float(v) for sym, v in zip(self.universe, s[0], strict=True) if np.isfinite(v)}
        return select_weights(s, self._pairs, p)[0], values

    @classmethod
    def vector_targets(cls, data: MarketArrays, params: MomentumParams,
                       cache: dict[Any, Any] | None = None) -> np.ndarray:
        """Targets (T,N) after every minute of ``data``, computed on whole arrays at once."""
        reb, held = rebalance_rows(data.day, data.minute, params.rebalance_minutes)
        s = scores(data.ret, data.has, data.fresh, params.lookback, params.vol_window, rows=reb, cache=cache)
        return select_weights(s, pair_indices(data.symbols), params)[held]
