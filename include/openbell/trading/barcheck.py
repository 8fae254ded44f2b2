"""Checks a streamed or refilled bar before it may move a price: the live loop's bad-print filter.

Stored bars are checked by :mod:`openbell.store.bars`; bars that reach the live loop get the same
checks (finite, positive prices; open and close within the bar's own high and low; a finite,
non-negative volume) and a jump filter: a close more than ``max_jump`` away from the symbol's last
accepted close is refused, unless a bar of a later minute confirms the new level (a real gap, not a bad
print).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from openbell.strategy.base import Bar

DEFAULT_MAX_JUMP = 0.2  # a 20% move within one minute; a 3x leveraged ETF needs a 6.7% move underneath


@dataclass
class BarCheck:
    """Per-symbol state of the filter; ``last`` holds each symbol's last accepted close."""

    max_jump: float = DEFAULT_MAX_JUMP
    last: dict[str, float] = field(default_factory=dict)
    _pending: dict[str, Bar] = field(default_factory=dict)  # a refused jump, confirmed by a later minute

    def __post_init__(self) -> None:
        if not (math.isfinite(self.max_jump) and self.max_jump > 0):
            raise ValueError(f"max_jump must be a finite number > 0, got {self.max_jump!r}")

    def refusal(self, bar: Bar) -> str | None:
        """Why ``bar`` must not be used (None when it may). An accepted bar becomes the new last price."""
        reason = _shape(bar)
        if reason is not None:
            return reason
        last = self.last.get(bar.symbol)
        if last is not None and abs(bar.close / last - 1.0) > self.max_jump:
            pending = self._pending.get(bar.symbol)
            confirmed = (pending is not None and bar.ts > pending.ts
                         and abs(bar.close / pending.close - 1.0) <= self.max_jump)
            if not confirmed:
                self._pending[bar.symbol] = bar
                return f"close {bar.close:g} jumps {bar.close / last - 1.0:+.1%} from the last price {last:g}"
        self._pending.pop(bar.symbol, None)
        self.last[bar.symbol] = bar.close
        return None

    def shape_refusal(self, bar: Bar) -> str | None:
        """The checks of the bar alone (for a late bar, which must not move the last price)."""
        return _shape(bar)


def _shape(bar: Bar) -> str | None:
    prices = (bar.open, bar.high, bar.low, bar.close)
    if not all(math.isfinite(p) for p in prices):
        return "non-finite price"
    if any(p <= 0 for p in prices):
        return "non-positive price"
    if bar.high < bar.low:
        return "high below low"
    if not (bar.low <= bar.open <= bar.high and bar.low <= bar.close <= bar.high):
        return "open or close outside the bar's high-low range"
    if not math.isfinite(bar.volume) or bar.volume < 0:
        return "bad volume"
    return None
