"""Every minute's targets of a strategy on prepared arrays: its vectorized twin, or ``on_minute`` replayed.

Without a twin, a fresh instance warms up on an empty frame and is handed each minute's bars in order, as
the live loop hands them over (a symbol without a bar in a minute is left out of that minute's bars). Row t
of the result is what ``on_minute`` returned after minute t, in the order of ``data.symbols``: a symbol it
left out is 0, a value that is not a number NaN (the backtest and the risk gate treat NaN as 0).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel

from openbell.strategy.base import Bar, StrategyClass
from openbell.strategy.contract import vector_twin
from openbell.strategy.data import MarketArrays

HISTORY_COLUMNS = ("timestamp", "symbol", "open", "high", "low", "close", "volume")
Minutes = list[tuple[datetime, dict[str, Bar]]]


def targets(cls: StrategyClass, data: MarketArrays, params: BaseModel,
            cache: dict[Any, Any] | None = None) -> np.ndarray:
    """Targets (T,N) after every minute of ``data``: the twin's when the class has one, else replayed.
    ``cache`` keeps what does not depend on ``params`` between calls on the same ``data``."""
    twin = vector_twin(cls)
    if twin is not None:
        return twin(data, params, cache)
    return replay_targets(cls, data, params, cache)


def replay_targets(cls: StrategyClass, data: MarketArrays, params: BaseModel,
                   cache: dict[Any, Any] | None = None) -> np.ndarray:
    """Targets (T,N) from a fresh instance's ``on_minute``, minute after minute."""
    strategy = cls(params, data.symbols)
    strategy.warmup(empty_history())
    out = np.empty((len(data.times), len(data.symbols)))
    for t, (ts, bars) in enumerate(minute_bars(data, cache)):
        out[t] = _row(strategy.on_minute(ts, dict(bars)), data.symbols, ts)
    return out


def empty_history() -> pd.DataFrame:
    """A warmup frame without bars."""
    frame = pd.DataFrame({c: pd.Series(dtype=float) for c in HISTORY_COLUMNS})
    return frame.astype({"timestamp": "datetime64[ns, UTC]", "symbol": object})


def minute_bars(data: MarketArrays, cache: dict[Any, Any] | None = None) -> Minutes:
    """Each minute's start and bars, as the live loop hands them to ``on_minute``."""
    if cache is not None and "minute_bars" in cache:
        return cache["minute_bars"]  # type: ignore[no-any-return]
    minutes: Minutes = []
    fields = (data.open, data.high, data.low, data.close, data.volume)
    for t, stamp in enumerate(data.times):
        ts = stamp.to_pydatetime()
        row = [f[t].tolist() for f in fields]
        minutes.append((ts, {s: Bar(s, ts, *(r[i] for r in row)) for i, s in enumerate(data.symbols)
                             if data.has[t, i]}))
    if cache is not None:
        cache["minute_bars"] = minutes
    return minutes


def _row(weights: Any, symbols: tuple[str, ...], ts: datetime) -> list[float]:
    if not isinstance(weights, Mapping):
        raise TypeError(f"on_minute returned {type(weights).__name__} at {ts.isoformat()}, not a mapping of "
                        f"symbol to weight")
    return [_number(weights.get(s, 0.0)) for s in symbols]


def _number(value: Any) -> float:
    """The weight as the risk gate reads it: a number (not a bool), else NaN."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating | np.integer):
        return math.nan
    return float(value)
