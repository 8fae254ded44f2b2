"""Strategies the day report's tests replay, named ``day_strategies:Class`` (this directory is on sys.path).

``StepIn`` holds ``weight`` of the equity in AAA from 09:32 ET on, and a quarter in BBB from 09:33 to 09:35 ET;
it decides by the minute alone, so its orders are worked out by hand in ``day_fixture``. ``StepInShort`` holds
the quarter of BBB short instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from openbell.calendar import ET


class StepInParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    weight: float = Field(0.2, gt=0.0, le=1.0)


class StepIn:
    name = "step_in"
    Params = StepInParams

    def __init__(self, params: StepInParams, universe: Sequence[str]) -> None:
        self.params = params
        self.universe = tuple(universe)
        self.warmed = 0

    def warmup(self, history: pd.DataFrame) -> None:
        """Remember how many bars the warm-up brought."""
        self.warmed = len(history)

    def on_minute(self, ts: datetime, bars: Mapping[str, Any]) -> dict[str, float]:
        hhmm = ts.astimezone(ET).strftime("%H:%M")
        weights = {s: 0.0 for s in self.universe}
        if hhmm >= "09:32":
            weights["AAA"] = self.params.weight
        if "09:33" <= hhmm < "09:36":
            weights["BBB"] = 0.25
        return weights


class StepInShort(StepIn):
    name = "step_in_short"

    def on_minute(self, ts: datetime, bars: Mapping[str, Any]) -> dict[str, float]:
        return {s: -w if s == "BBB" and w else w for s, w in super().on_minute(ts, bars).items()}
