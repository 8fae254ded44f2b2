"""ob_example.laggards: the leaders long, as :class:`ob_example.Leaders` holds them, and the laggards short.

A plug-in with short targets and no vectorized twin, for runs that allow short sales
(``{"strategy": "ob_example.laggards:LeadersAndLaggards", "allow_short": true}``).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from pydantic import Field

from ob_example import Leaders, LeadersParams
from openbell.strategy import Bar


class LeadersAndLaggardsParams(LeadersParams):
    """The leaders' parameters, and how many of the fallers are held short with what exposure."""

    short_k: int = Field(1, ge=1, le=10, description="Most symbols held short at once.")
    short_gross: float = Field(0.2, gt=0.0, le=1.0, description="Short exposure when short_k symbols are short.")


class LeadersAndLaggards(Leaders):
    """Long the ``top_k`` symbols that rose most over ``lookback`` bars, short the ``short_k`` that fell most."""

    name = "ob_example_laggards"
    Params = LeadersAndLaggardsParams
    params: LeadersAndLaggardsParams

    def on_minute(self, ts: datetime, bars: Mapping[str, Bar]) -> dict[str, float]:
        """The leaders' weights, with the fallers' short weights beside them."""
        weights = super().on_minute(ts, bars)
        falling = sorted((s for s, r in self._changes.items() if r < 0), key=self._changes.get)
        for symbol in falling[: self.params.short_k]:
            weights[symbol] = -self.params.short_gross / self.params.short_k
        return weights
