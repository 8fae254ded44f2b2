"""Strategies the order-kind tests trade, named ``kinds_strategies:Class`` (this directory is on sys.path).

``LongShort`` holds SSO and XLF long and TQQQ and SDS short, from the first minute it decides on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar

import pandas as pd
from pydantic import BaseModel, ConfigDict


class LongShortParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LongShort:
    name = "long_short"
    Params = LongShortParams
    WEIGHTS: ClassVar[dict[str, float]] = {"SSO": 0.3, "XLF": 0.1, "TQQQ": -0.2, "SDS": -0.2}

    def __init__(self, params: LongShortParams, universe: Sequence[str]) -> None:
        self.universe = tuple(universe)

    def warmup(self, history: pd.DataFrame) -> None:
        """Nothing to learn."""

    def on_minute(self, ts: datetime, bars: Mapping[str, Any]) -> dict[str, float]:
        return {s: self.WEIGHTS.get(s, 0.0) for s in self.universe}
