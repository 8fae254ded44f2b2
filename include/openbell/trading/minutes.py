"""Assembling minutes from streamed bars: each (symbol, minute) applied once, minutes in order; bars to and
from the frames of stored bars."""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import datetime, timedelta

import pandas as pd

from openbell.store.bars import REQUIRED
from openbell.strategy.base import Bar

MINUTE = timedelta(minutes=1)


def floor_minute(t: datetime) -> datetime:
    """The start of ``t``'s minute."""
    return t.replace(second=0, microsecond=0)


def bars_frame(rows: list[Bar]) -> pd.DataFrame:
    """Bars as the frame a strategy warms up on."""
    frame = pd.DataFrame(
        [(b.ts, b.symbol, b.open, b.high, b.low, b.close, b.volume) for b in rows], columns=list(REQUIRED)
    )
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
    return frame


def warm_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Stored bars (:func:`~openbell.store.bars.load_bars`) as the frame a strategy warms up on, in time order:
    the same frame :func:`bars_frame` makes of them, kept as one frame rather than an object per bar."""
    ordered = frame.sort_values(["timestamp", "symbol"], kind="stable")
    return ordered.loc[:, list(REQUIRED)].reset_index(drop=True)


def frame_bars(frame: pd.DataFrame) -> list[Bar]:
    """A frame of stored or fetched bars as bars, in the frame's order."""
    return [
        Bar(
            str(r.symbol),
            pd.Timestamp(r.timestamp).to_pydatetime(),
            float(r.open),
            float(r.high),
            float(r.low),
            float(r.close),
            float(r.volume),
        )
        for r in frame.itertuples(index=False)
    ]


class MinuteBook:
    """Bars waiting for their minute's decision.

    ``add`` refuses a bar for a minute already decided (late) or a symbol already held for that
    minute (a duplicate); bars for later minutes wait (out of order is fine). A minute is *decidable*
    once every symbol has its bar or a bar of a later minute has come (the venue sends a minute's bars
    together, so the stream has moved past it: a symbol still without a bar had no trades).
    ``ready_at`` keeps the ``perf_counter`` instant the minute became decidable.
    """

    def __init__(self, universe: Iterable[str], next_minute: datetime) -> None:
        self.universe = frozenset(universe)
        self.next_minute = next_minute
        self.newest: datetime | None = None  # the latest minute any bar was received for
        self._bars: dict[datetime, dict[str, Bar]] = {}
        self._ready_at: dict[datetime, float] = {}
        self.duplicates = 0
        self.late = 0

    def add(self, bar: Bar) -> bool:
        """Keep ``bar`` if it is new and its minute is still to be decided."""
        if bar.ts < self.next_minute:
            self.late += 1
            return False
        minute = self._bars.setdefault(bar.ts, {})
        if bar.symbol in minute:
            self.duplicates += 1
            return False
        minute[bar.symbol] = bar
        if self.newest is None or bar.ts > self.newest:
            now = time.perf_counter()
            m = self.next_minute if self.newest is None else max(self.newest, self.next_minute)
            while m < bar.ts:  # every earlier minute is overtaken
                self._ready_at.setdefault(m, now)
                m += MINUTE
            self.newest = bar.ts
        if bar.ts not in self._ready_at and self.universe <= minute.keys():
            self._ready_at[bar.ts] = time.perf_counter()
        return True

    def complete(self, minute: datetime) -> bool:
        """Every symbol of the universe has its bar for ``minute``."""
        return self.universe <= self._bars.get(minute, {}).keys()

    def decidable(self, minute: datetime) -> bool:
        """``minute`` is complete, or the stream has moved past it."""
        return minute in self._ready_at

    def ready_at(self, minute: datetime) -> float | None:
        return self._ready_at.get(minute)

    def has_bars(self, minute: datetime) -> bool:
        return bool(self._bars.get(minute))

    def missing(self, minute: datetime) -> set[str]:
        return set(self.universe - self._bars.get(minute, {}).keys())

    def take(self, minute: datetime) -> dict[str, Bar]:
        """The bars of ``minute`` (which must be the next one); later minutes stay."""
        if minute != self.next_minute:
            raise ValueError(f"minutes are decided in order: expected {self.next_minute}, got {minute}")
        bars = self._bars.pop(minute, {})
        self._ready_at.pop(minute, None)
        self.next_minute = minute + MINUTE
        return bars

    def skip_to(self, minute: datetime) -> None:
        """Forget everything before ``minute`` (after a warmup that already covered it)."""
        for m in [m for m in self._bars if m < minute]:
            self._bars.pop(m)
        for m in [m for m in self._ready_at if m < minute]:
            self._ready_at.pop(m)
        self.next_minute = max(self.next_minute, minute)
