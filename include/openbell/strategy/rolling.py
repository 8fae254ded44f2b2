"""The live form of the built-in strategies: bars absorbed minute by minute into a window of recent
returns, targets recomputed on the first minute of each rebalance bucket and held in between.

:class:`RollingStrategy` is the shared skeleton (constructor, ``warmup``, ``on_minute``, ``targets``,
``diagnostics``); a strategy adds its ``name``, its ``Params`` (with ``lookback``, ``vol_window`` and
``rebalance_minutes``) and ``_rebalance``, the weights and per-symbol values from the window. The window
holds the returns :func:`~openbell.strategy.data.prepare` computes, so its rows are the last rows of the
prepared arrays the vectorized twins work on.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar, Protocol

import numpy as np
import pandas as pd
from pydantic import BaseModel

from openbell.strategy.base import DEFAULT_UNIVERSE, Bar
from openbell.strategy.data import market_day_minute, prepare
from openbell.strategy.signals import pair_indices, rebalance_keys

log = logging.getLogger(__name__)


class WindowParams(Protocol):
    """What :class:`RollingStrategy` reads of a strategy's params."""

    lookback: int
    vol_window: int
    rebalance_minutes: int


class ReturnWindow:
    """The last ``size`` minutes of N symbols: gap-excluded log returns (``ret``) and whether each printed
    (``has``), oldest row first.

    Rows are written into buffers twice the window's length and the window is a view of the last ``size``
    written; the buffers are shifted once every ``size`` minutes instead of on every minute.
    """

    def __init__(self, n: int, size: int) -> None:
        self.size = size
        self.rows = 0  # minutes pushed so far
        self._ret = np.zeros((2 * size, n))
        self._has = np.zeros((2 * size, n), dtype=bool)
        self._end = size  # the window is rows [end - size, end) of the buffers
        self._last_close = np.full(n, np.nan)
        self._last_day = np.full(n, -1, dtype=np.int64)

    @property
    def ret(self) -> np.ndarray:
        """(size, N) log returns, 0 where no bar (and before the first minute)."""
        return self._ret[self._end - self.size : self._end]

    @property
    def has(self) -> np.ndarray:
        """(size, N) whether each symbol printed in each minute."""
        return self._has[self._end - self.size : self._end]

    @property
    def first_row(self) -> int:
        """The absolute index of the window's first row (negative until ``size`` minutes were pushed)."""
        return self.rows - self.size

    def fresh(self, day: int) -> np.ndarray:
        """(N,) whether each symbol has printed in the session ``day``."""
        return self._last_day == day

    def push(self, day: int, opens: np.ndarray, closes: np.ndarray, has: np.ndarray) -> None:
        """Absorb one minute of session ``day``: prices NaN where ``has`` is False."""
        same = has & (self._last_day == day)
        with np.errstate(invalid="ignore", divide="ignore"):
            first = np.where(has, np.log(closes / opens), 0.0)
            ret = np.where(same, np.log(closes / self._last_close), first)
        self._last_close = np.where(has, closes, self._last_close)
        self._last_day = np.where(has, day, self._last_day)
        if self._end == len(self._ret):
            self._ret[: self.size] = self._ret[self.size :]
            self._has[: self.size] = self._has[self.size :]
            self._end = self.size
        self._ret[self._end], self._has[self._end] = ret, has
        self._end += 1
        self.rows += 1


class RollingStrategy:
    """Shared live skeleton of the built-in strategies; subclasses define ``_rebalance``."""

    name: ClassVar[str]
    Params: ClassVar[type[BaseModel]]

    def __init__(self, params: Any, universe: Sequence[str] = DEFAULT_UNIVERSE) -> None:
        if not isinstance(params, self.Params):
            raise TypeError(f"params must be {self.Params.__name__}; use openbell.strategy.build()")
        self.params: Any = params
        self.universe = tuple(universe)
        if not self.universe or len(set(self.universe)) != len(self.universe):
            raise ValueError(f"universe must be non-empty and unique, got {self.universe}")
        self._at = {s: i for i, s in enumerate(self.universe)}
        self._pairs = pair_indices(self.universe)
        self._reset()

    def _reset(self) -> None:
        p: WindowParams = self.params
        self._window = ReturnWindow(len(self.universe), max(p.lookback, p.vol_window))
        self._last_ts: datetime | None = None
        self._last_key: int | None = None
        self._held = np.zeros(len(self.universe))
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
        """Absorb the bars of minute ``ts`` and return the target weight of every universe symbol. A bar
        without a positive, finite open and close is logged and ignored, as if the symbol had not traded."""
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
        """The per-symbol values of the last rebalance (recorded with each decision)."""
        return dict(self.last_scores)

    def _step(self, ts: datetime, day: int, minute: int, opens: np.ndarray, closes: np.ndarray,
              has: np.ndarray) -> None:
        self._window.push(day, opens, closes, has)
        self._last_ts = ts
        key = int(rebalance_keys(day, minute, self.params.rebalance_minutes))
        if key == self._last_key:
            return
        self._last_key = key
        self._held, self.last_scores = self._rebalance(day)

    def _rebalance(self, day: int) -> tuple[np.ndarray, dict[str, float]]:
        """(weights (N,), per-symbol values) from the window, on the first minute of a bucket of ``day``."""
        raise NotImplementedError
