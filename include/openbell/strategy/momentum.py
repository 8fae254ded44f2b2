"""``momentum_rotation``: hold the top-k symbols by risk-adjusted intraday momentum.

Score of a symbol at minute t: the sum of its gap-excluded log returns over the last ``lookback``
minutes divided by (realized volatility over ``vol_window`` minutes x sqrt(lookback)), i.e. a t-stat
of the recent move. Lookbacks run across session boundaries (the overnight gap itself is excluded,
see :mod:`openbell.strategy.data`), so warmup on prior sessions gives a score at the open.
A symbol is eligible when it has printed in the current session and in at least half of the
volatility window, and the strategy has seen at least max(lookback, vol_window) minutes.
Of each inverse pair only the better-scoring leg stays (neither on an exact tie). A symbol chosen at the
session's previous rebalance keeps its slot while its score stays above ``exit_threshold`` (a turnover
buffer: a newcomer scoring higher does not displace it); the slots left go to the best scores above
``threshold``; flat when none qualifies. Every session starts with nothing chosen. Targets change only on
the first minute of each clock-aligned bucket of ``rebalance_minutes`` (New York time) and are held between.

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
    exit_threshold: float = Field(0.0, ge=0.0, le=10.0,
                                  description="A held symbol keeps its slot while its score stays above this.")
    rebalance_minutes: int = Field(5, ge=1, le=120, description="Clock bucket between rebalances.")
    weighting: Literal["equal", "score"] = Field("equal", description="Split of the gross among holdings.")
    gross: float = Field(1.0, gt=0.0, le=1.0, description="Exposure when all top_k slots are filled.")


def select_weights(s: np.ndarray, pairs: np.ndarray, p: MomentumParams, days: np.ndarray | None = None,
                   held: np.ndarray | None = None) -> np.ndarray:
    """Target weights (R,N) from scores (R,N) at consecutive rebalances: pair exclusion, the chosen symbols
    that stay above ``exit_threshold``, the best others above ``threshold`` up to ``top_k``, weighting.
    ``days`` (R,) is each row's session (None: every row a session of its own); ``held`` (N,) the symbols
    chosen at the rebalance before the first row, in the first row's session."""
    s = s.copy()
    if len(pairs):
        a, b = pairs[:, 0], pairs[:, 1]
        sa, sb = s[:, a], s[:, b]
        s[:, a] = np.where(sb >= sa, np.nan, sa)  # comparisons with NaN are False
        s[:, b] = np.where(sa >= sb, np.nan, sb)
    qualify, stays = s > p.threshold, s > p.exit_threshold
    chosen = _chosen(s, qualify, stays, p.top_k, days, held)
    if p.weighting == "equal":
        return np.where(chosen, p.gross / p.top_k, 0.0)
    picked = np.where(chosen, s, 0.0)
    total = picked.sum(axis=1, keepdims=True)
    n_sel = chosen.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        w = picked / total * (p.gross * n_sel / p.top_k)
    return np.where(chosen, w, 0.0)


def _chosen(s: np.ndarray, qualify: np.ndarray, stays: np.ndarray, top_k: int, days: np.ndarray | None,
            held: np.ndarray | None) -> np.ndarray:
    """(R,N) the symbols chosen at each row: the ones chosen at the row before (the same session) that stay,
    then the best qualifying others. A loop over the rows, on Python lists: the choice depends on the last."""
    ranked = np.argsort(np.where(qualify, -s, np.inf), axis=1, kind="stable").tolist()  # qualifying first, best first
    n_qualify = qualify.sum(axis=1).tolist()
    stays_l = stays.tolist()
    same = [False] * len(s) if days is None else [False, *(days[1:] == days[:-1]).tolist()]
    before = [] if held is None else np.flatnonzero(held).tolist()
    rows: list[int] = []
    cols: list[int] = []
    for r, (order, n, stay) in enumerate(zip(ranked, n_qualify, stays_l, strict=True)):
        keep = [j for j in before if stay[j]] if (same[r] or r == 0) else []
        if len(keep) < top_k:
            keep += [j for j in order[:n] if j not in keep][: top_k - len(keep)]
        rows += [r] * len(keep)
        cols += keep
        before = keep
    chosen = np.zeros(s.shape, dtype=bool)
    chosen[rows, cols] = True
    return chosen


@register
class MomentumRotation(RollingStrategy):
    """Live (``on_minute``) and vectorized (``vector_targets``) forms of the same signal."""

    name: ClassVar[str] = "momentum_rotation"
    Params: ClassVar[type[MomentumParams]] = MomentumParams

    def _reset(self) -> None:
        super()._reset()
        self._held_day: int | None = None  # the session of the last rebalance

    def _rebalance(self, day: int) -> tuple[np.ndarray, dict[str, float]]:
        """Weights from the scores at the window's last row and the symbols chosen at the session's previous
        rebalance; the scores are the diagnostics."""
        p, w = self.params, self._window
        fresh = np.broadcast_to(w.fresh(day), w.ret.shape)
        s = scores(w.ret, w.has, fresh, p.lookback, p.vol_window, first_row=w.first_row, rows=np.array([w.size - 1]))
        values = {sym: float(v) for sym, v in zip(self.universe, s[0], strict=True) if np.isfinite(v)}
        held = self._held > 0 if self._held_day == day else None  # each session starts with nothing chosen
        self._held_day = day
        return select_weights(s, self._pairs, p, held=held)[0], values

    @classmethod
    def vector_targets(cls, data: MarketArrays, params: MomentumParams,
                       cache: dict[Any, Any] | None = None) -> np.ndarray:
        """Targets (T,N) after every minute of ``data``, computed on whole arrays at once."""
        reb, held = rebalance_rows(data.day, data.minute, params.rebalance_minutes)
        s = scores(data.ret, data.has, data.fresh, params.lookback, params.vol_window, rows=reb, cache=cache)
        return select_weights(s, pair_indices(data.symbols), params, days=data.day[reb])[held]
