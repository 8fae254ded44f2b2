"""Bars into minutes: streamed and refilled bars checked, stored and kept for their minute's decision.

The :class:`MinuteBook` holds the bars of minutes not decided yet; a bar for a minute already decided
(late) is stored but not decided on. A minute is decided once every symbol has its bar, once the stream
has moved past it (a symbol without a bar had no trades: it carries its last price), or when a short
wait after its end runs out. REST refills a minute only when the stream could not have delivered it:
before the current connection's subscription, or with no bar of that minute or a later one by then.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import datetime, timedelta
from typing import Any

from openbell.ports import MarketDataPort, Window
from openbell.strategy import Bar
from openbell.trading.barcheck import BarCheck
from openbell.trading.context import LoopContext
from openbell.trading.minutes import MINUTE, MinuteBook, floor_minute, frame_bars

log = logging.getLogger(__name__)


class MinuteFeed:
    """The minutes to decide, fed by the bar stream (``streamed``) and by REST refills (``refill``)."""

    book: MinuteBook  # set by ``start``, once the first minute to decide is known
    minute_ready: asyncio.Event  # attached when the session runs: set when a streamed bar completes a minute

    def __init__(
        self,
        ctx: LoopContext,
        *,
        data: MarketDataPort,
        grace: timedelta,
        wall_grace: float,
    ) -> None:
        self._threads = ctx.threads
        self._recorder = ctx.recorder
        self._report = ctx.report
        self._data = data
        self._universe = ctx.universe
        self._clock = ctx.clock
        self._grace = grace
        self._wall_grace = wall_grace
        self.barcheck = BarCheck()
        self.refilled_until: datetime | None = None  # minutes before this were fetched by a refill
        self.streamed_since: datetime | None = None  # market time the stream's subscription was acknowledged

    def start(self, minute: datetime) -> None:
        """Decide minutes from ``minute`` on."""
        self.book = MinuteBook(self._universe, minute)

    def subscribed(self, at: datetime) -> None:
        """The bar stream's subscription was acknowledged at market time ``at`` (after each (re)connect)."""
        self.streamed_since = at

    def streamed(self, bar: Bar, trade_count: Any, vwap: Any) -> None:
        """A bar from the stream; wakes the loop when the next minute can be decided."""
        if self.take(bar, "stream", trade_count, vwap) and self.book.decidable(self.book.next_minute):
            self.minute_ready.set()

    def corrected(self, bar: Bar, trade_count: Any, vwap: Any) -> None:
        """A bar the venue re-sent after late trades: stored in place of the first (an upsert), never decided
        on again; a correction that fails the bar's own checks is refused and recorded."""
        reason = self.barcheck.shape_refusal(bar)
        if reason is not None:
            self._report.bars_refused += 1
            self._recorder.event("bar_refused", {"symbol": bar.symbol, "ts": bar.ts, "source": "correction",
                                                 "reason": reason})
            return
        self._report.bars_corrected += 1
        self._recorder.bar(bar, "stream", trade_count, vwap)

    def take(self, bar: Bar, source: str, trade_count: Any, vwap: Any) -> bool:
        """A streamed or refilled bar: checked, stored, and kept for its minute's decision unless that
        minute was decided already (a late bar is stored, not decided on). True when kept."""
        late = bar.ts < self.book.next_minute
        reason = self.barcheck.shape_refusal(bar) if late else self.barcheck.refusal(bar)
        if reason is not None:
            self._report.bars_refused += 1
            payload = {"symbol": bar.symbol, "ts": bar.ts, "source": source, "reason": reason,
                       "bar": [bar.open, bar.high, bar.low, bar.close, bar.volume]}
            log.warning("bar refused: %s %s: %s", bar.symbol, bar.ts, reason)
            self._recorder.event("bar_refused", payload)
            return False
        kept = self.book.add(bar)
        if kept or late:
            self._report.late_bars_stored += late
            self._recorder.bar(bar, source, trade_count, vwap)
        return kept

    async def wait(self, t: datetime) -> None:
        """Until ``t`` is decidable (complete, or the stream moved past it) or its deadline passed."""
        due = t + MINUTE + self._grace
        await self._clock.anow()  # refresh the sim mapping without blocking the loop
        while not self.book.decidable(t):
            remaining = self._clock.wall_deadline(due) + self._wall_grace - time.time()
            if remaining <= 0:
                return
            self.minute_ready.clear()
            if self.book.decidable(t):
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.minute_ready.wait(), timeout=min(remaining, 1.0))

    def refill_reason(self, t: datetime) -> str | None:
        """Why the stream could not have delivered ``t`` in full, if it could not: ``t``'s bars were sent
        (at its end) before the current subscription, or no bar of ``t`` or later has come. A symbol merely
        without trades in ``t`` is no reason: REST has no bar for it either."""
        book = self.book
        if book.complete(t) or (self.refilled_until is not None and t < self.refilled_until):
            return None
        if self.streamed_since is None or self.streamed_since > t + MINUTE:
            return "before the stream's subscription"
        if book.newest is None or book.newest < t:
            return "the stream is behind"
        return None

    async def refill(self, t: datetime, why: str) -> bool:
        """Fetch through REST every completed minute from ``t`` on (bars the stream sent are kept)."""
        now = await self._clock.anow()
        end = max(t + MINUTE, floor_minute(now))
        missing = sorted(self.book.missing(t))
        try:
            frame = await asyncio.get_running_loop().run_in_executor(
                self._threads.pool, self._data.bars, self._universe, Window(t, end)
            )
        except Exception as exc:
            reason = self._data.describe(exc)
            log.warning("refill of %s failed: %s", t, reason)
            self._recorder.event("refill_failed", {"minute": t, "why": why, "error": reason})
            return True
        added = sum(self.take(bar, "rest", None, None) for bar in frame_bars(frame))
        self.refilled_until = end
        self._report.refills += 1
        self._report.refilled_bars += added
        self._recorder.event("refill", {"minute": t, "until": end, "why": why, "missing": missing, "bars": added})
        return True
