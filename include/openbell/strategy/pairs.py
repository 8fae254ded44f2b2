"""``pair_rotation``: of the bull/bear pairs of leveraged ETFs, hold the stronger leg of the strongest pairs.

Strength of a pair at minute t: the risk-adjusted momentum of its bull leg (the score
:func:`~openbell.strategy.signals.scores` gives ``momentum_rotation``'s symbols): the sum of the bull leg's
gap-excluded log returns over the last ``lookback`` minutes over (its realized volatility over
``vol_window`` minutes x sqrt(lookback)). Positive, the bull leg rose and the pair's bull leg is the one to
hold; negative, the bear leg. A pair is eligible when its bull leg has a score (it printed this session and
in at least half of the volatility window, and max(lookback, vol_window) minutes have been seen) and its
bear leg has printed this session too; a pair with a leg outside the universe is never held.

The ``top_pairs`` eligible pairs of largest absolute strength above ``threshold`` are held, one leg each
(a tie goes to the pair listed first in :data:`~openbell.strategy.base.INVERSE_PAIRS`); flat when none
qualifies. Each held leg weighs ``gross / top_pairs`` (``weighting="equal"``) or its share of the held
strengths times ``gross x held / top_pairs`` (``"strength"``). Targets change only on the first minute of
each clock-aligned bucket of ``rebalance_minutes`` (New York time) and are held between.

The same functions (:func:`pair_strengths`, :func:`select_legs`) compute the live targets minute by minute
and the vectorized targets of the backtest.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from openbell.strategy.base import register
from openbell.strategy.data import MarketArrays
from openbell.strategy.rolling import RollingStrategy
from openbell.strategy.signals import pair_indices, rebalance_rows, scores


class PairParams(BaseModel):
    """Parameters of ``pair_rotation``; bounds are part of the JSON schema (the optimizer's search space)."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    lookback: int = Field(30, ge=2, le=240, description="Minutes of the bull leg's return in the strength.")
    vol_window: int = Field(60, ge=5, le=390, description="Minutes of the bull leg's realized volatility.")
    top_pairs: int = Field(2, ge=1, le=6, description="Most pairs held at once, one leg each.")
    threshold: float = Field(1.0, ge=0.0, le=10.0, description="Least absolute strength to hold a pair.")
    rebalance_minutes: int = Field(5, ge=1, le=120, description="Clock bucket between rebalances.")
    weighting: Literal["equal", "strength"] = Field("equal", description="Split of the gross among held legs.")
    gross: float = Field(1.0, gt=0.0, le=1.0, description="Exposure when all top_pairs slots are filled.")


def pair_strengths(ret: np.ndarray, has: np.ndarray, fresh: np.ndarray, pairs: np.ndarray, p: PairParams,
                   first_row: int = 0, rows: np.ndarray | None = None,
                   cache: dict[Any, Any] | None = None) -> np.ndarray:
    """Signed strengths (R,P) of the ``pairs`` (P,2 columns: bull, bear) at ``rows`` (default all) of the
    (T,N) arrays, NaN where a pair is ineligible; ``first_row`` and ``cache`` as for
    :func:`~openbell.strategy.signals.scores`."""
    s = scores(ret, has, fresh, p.lookback, p.vol_window, first_row=first_row, rows=rows, cache=cache)
    idx = np.arange(len(ret)) if rows is None else rows
    return np.where(fresh[idx][:, pairs[:, 1]], s[:, pairs[:, 0]], np.nan)


def select_legs(strength: np.ndarray, pairs: np.ndarray, n_symbols: int, p: PairParams) -> np.ndarray:
    """Target weights (R,N) from signed pair strengths (R,P): threshold, top pairs, leg, weighting."""
    size = np.abs(strength)
    qualify = size > p.threshold  # NaN compares False
    ranked = np.where(qualify, size, -np.inf)
    top = np.argsort(-ranked, axis=1, kind="stable")[:, : p.top_pairs]
    rows = np.arange(len(strength))[:, None]
    chosen = np.zeros_like(qualify)
    chosen[rows, top] = qualify[rows, top]
    if p.weighting == "equal":
        w = np.where(chosen, p.gross / p.top_pairs, 0.0)
    else:
        picked = np.where(chosen, size, 0.0)
        total = picked.sum(axis=1, keepdims=True)
        n_sel = chosen.sum(axis=1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            w = np.where(chosen, picked / total * (p.gross * n_sel / p.top_pairs), 0.0)
    out = np.zeros((len(strength), n_symbols))
    out[:, pairs[:, 0]] = np.where(strength > 0, w, 0.0)
    out[:, pairs[:, 1]] = np.where(strength < 0, w, 0.0)
    return out


def leg_values(strength: np.ndarray, pairs: np.ndarray, universe: tuple[str, ...]) -> dict[str, float]:
    """Each eligible pair's strength (P,) by leg, as seen from that leg: the bull leg's is the strength, the
    bear leg's its negative (the held leg's is positive)."""
    out: dict[str, float] = {}
    for (bull, bear), s in zip(pairs.tolist(), strength.tolist(), strict=True):
        if np.isfinite(s):
            out[universe[bull]], out[universe[bear]] = s, -s
    return out


@register
class PairRotation(RollingStrategy):
    """Live (``on_minute``) and vectorized (``vector_targets``) forms of the same signal."""

    name: ClassVar[str] = "pair_rotation"
    Params: ClassVar[type[PairParams]] = PairParams

    def _rebalance(self, day: int) -> tuple[np.ndarray, dict[str, float]]:
        """Weights from the strengths at the window's last row; the strengths, by leg, are the diagnostics."""
        w = self._window
        fresh = np.broadcast_to(w.fresh(day), w.ret.shape)
        strength = pair_strengths(w.ret, w.has, fresh, self._pairs, self.params, first_row=w.first_row,
                                  rows=np.array([w.size - 1]))
        weights = select_legs(strength, self._pairs, len(self.universe), self.params)[0]
        return weights, leg_values(strength[0], self._pairs, self.universe)

    @classmethod
    def vector_targets(cls, data: MarketArrays, params: PairParams,
                       cache: dict[Any, Any] | None = None) -> np.ndarray:
        """Targets (T,N) after every minute of ``data``, computed on whole arrays at once."""
        reb, held = rebalance_rows(data.day, data.minute, params.rebalance_minutes)
        pairs = pair_indices(data.symbols)
        strength = pair_strengths(data.ret, data.has, data.fresh, pairs, params, rows=reb, cache=cache)
        return select_legs(strength, pairs, len(data.symbols), params)[held]
