"""ob_example: hold the symbols that rose most over their last ``lookback`` bars, equally weighted."""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from datetime import datetime

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from openbell.strategy import Bar


class LeadersParams(BaseModel):
    """What a run may set in ``strategy_params``; openbell checks them before the day starts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    lookback: int = Field(15, ge=1, le=390, description="Bars of price change.")
    top_k: int = Field(2, ge=1, le=10, description="Most symbols held at once.")
    gross: float = Field(0.5, gt=0.0, le=1.0, description="Exposure when top_k symbols are held.")


class Leaders:
    """No base class and no vectorized twin: the backtest and the optimizer replay ``on_minute``."""

    name = "ob_example"
    Params = LeadersParams

    def __init__(self, params: LeadersParams, universe: Sequence[str]) -> None:
        self.params = params
        self.universe = tuple(universe)
        self.warmup(pd.DataFrame(columns=["timestamp", "symbol", "close"]))

    def warmup(self, history: pd.DataFrame) -> None:
        """Forget everything, then absorb earlier bars (possibly none) in time order."""
        self._closes = {s: deque(maxlen=self.params.lookback + 1) for s in self.universe}
        self._changes: dict[str, float] = {}
        for row in history.sort_values("timestamp", kind="stable").itertuples():
            if row.symbol in self._closes:
                self._closes[row.symbol].append(float(row.close))

    def on_minute(self, ts: datetime, bars: Mapping[str, Bar]) -> dict[str, float]:
        """Target weights of every universe symbol after the minute that started at ``ts``."""
        for symbol, bar in bars.items():
            if symbol in self._closes:
                self._closes[symbol].append(bar.close)
        self._changes = {s: c[-1] / c[0] - 1 for s, c in self._closes.items() if len(c) == c.maxlen}
        rising = sorted((s for s, r in self._changes.items() if r > 0), key=self._changes.get, reverse=True)
        held = rising[: self.params.top_k]
        return {s: self.params.gross / self.params.top_k if s in held else 0.0 for s in self.universe}

    def diagnostics(self) -> dict[str, float]:
        """Each symbol's change over the lookback, recorded with every decision."""
        return dict(self._changes)
