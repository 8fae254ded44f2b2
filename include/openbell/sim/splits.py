"""Stock splits: ``RATIO`` new shares per old share, effective at the open of ``DATE``.

Raw prices show the split: every session before it trades at ``RATIO`` times the synthetic level (a
1-for-10 reverse split, ratio 0.1, follows a tenth of the price), with volume divided by the ratio.
Split-adjusted history divides the raw prices of sessions before each split that has happened by its
ratio (and multiplies their volume), so it runs on without the jump. Positions held across a split
are adjusted at its open: quantity times the ratio, average entry price divided by it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date

from openbell.sim.playback import is_session
from openbell.sim.symbols import parse_symbol


@dataclass(frozen=True)
class Split:
    """``ratio`` new shares per old share of ``symbol`` from the open of ``day``."""

    symbol: str
    ratio: float
    day: date

    @property
    def key(self) -> str:
        return f"{self.symbol}:{self.ratio:g}:{self.day.isoformat()}"


def parse_split(text: str) -> Split:
    """``SYM:RATIO:YYYY-MM-DD``; ValueError with a one-line reason otherwise."""
    parts = str(text).split(":")
    try:
        if len(parts) != 3:
            raise ValueError
        symbol, ratio, day = parse_symbol(parts[0]), float(parts[1]), date.fromisoformat(parts[2])
    except ValueError:
        raise ValueError(f"expected SYM:RATIO:YYYY-MM-DD, got {text!r}") from None
    if not math.isfinite(ratio) or ratio <= 0 or ratio == 1:
        raise ValueError(f"the split ratio must be a finite number > 0 other than 1, got {text!r}")
    if not is_session(day):
        raise ValueError(f"{day.isoformat()} is not an NYSE session, in {text!r}")
    return Split(symbol, ratio, day)


class SplitBook:
    """Every split, by symbol, with the price and volume factors they imply."""

    def __init__(self, splits: list[Split]) -> None:
        self.by_symbol: dict[str, list[Split]] = {}
        for s in splits:
            mine = self.by_symbol.setdefault(s.symbol, [])
            if any(o.day == s.day for o in mine):
                raise ValueError(f"two splits of {s.symbol} on {s.day.isoformat()}")
            mine.append(s)

    @property
    def all(self) -> list[Split]:
        return sorted((s for v in self.by_symbol.values() for s in v), key=lambda s: (s.day, s.symbol))

    def raw_factor(self, symbol: str, day: date) -> float:
        """The raw price on ``day`` relative to the synthetic level: the product of later splits' ratios."""
        return math.prod(s.ratio for s in self.by_symbol.get(symbol, ()) if s.day > day)

    def adjust_factor(self, symbol: str, day: date, today: date) -> float:
        """What split adjustment divides ``day``'s raw prices by, as known on ``today``."""
        return math.prod(s.ratio for s in self.by_symbol.get(symbol, ()) if day < s.day <= today)
