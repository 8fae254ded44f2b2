"""Stream supervision: the bar and trade-update streams started, counted, watched, restarted, stopped.

The streams themselves come from a :class:`~openbell.ports.StreamPort`; this module counts their connections,
waits for the bar subscription to be acknowledged, restarts a silent bar stream and asks for missed fills
after the trade stream reconnects. Bars arrive as :class:`Bar`, trade updates as
:class:`~openbell.ports.TradeNotice`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from openbell.clock import cached_now
from openbell.ports import OnBar, OnStatus, OnTrade, RunningStream, StreamPort
from openbell.strategy import Bar
from openbell.trading.context import LoopContext
from openbell.trading.minutes import MINUTE

log = logging.getLogger(__name__)

RECOVERY_DELAY = 0.1  # wall seconds after the trade stream reconnects, so it is listening again
SUBSCRIBE_WAIT = 5.0  # wall seconds the first catch-up waits for the bar stream's subscription
BAR_BACKOFF = (0.25, 5.0)  # wall seconds between reconnects: market minutes pass fast in simulation; 406 is retried


@dataclass(frozen=True)
class StreamHandlers:
    """Where the streams hand what they receive: each bar, each correction, each trading status, the moment the
    bar stream is subscribed (market time), each trade update, and a trade stream's reconnection (fills may
    have been missed)."""

    on_bar: OnBar
    on_corrected: OnBar
    on_status: OnStatus
    on_subscribed: Callable[[datetime], None]
    on_trade_update: OnTrade
    on_trade_reconnect: Callable[[], None]


class Streams:
    """The session's two streams. ``last_seen`` is the end of the newest streamed minute (or when the
    watchdog last restarted the bar stream); a bar stream silent for ``silence`` of market time is
    restarted. A trade stream that reconnects calls ``on_trade_reconnect`` (fills may have been missed)."""

    def __init__(
        self,
        ctx: LoopContext,
        feeds: StreamPort,
        to: StreamHandlers,
        *,
        silence: timedelta,
        trade_backoff: tuple[float, float],
    ) -> None:
        self._feeds = feeds
        self._day = ctx.session
        self._universe = ctx.universe
        self._clock = ctx.clock
        self._recorder = ctx.recorder
        self._report = ctx.report
        self._deliver = to.on_bar
        self._on_corrected = to.on_corrected
        self._on_status = to.on_status
        self._on_subscribed = to.on_subscribed
        self._on_trade_update = to.on_trade_update
        self._on_trade_reconnect = to.on_trade_reconnect
        self._silence = silence
        self._trade_backoff = trade_backoff  # wall seconds between reconnect attempts
        self.last_seen: datetime = ctx.session.open
        self.connects = 0  # bar stream connections, the first one included
        self._subscribed = asyncio.Event()
        self._bar_stream: RunningStream | None = None
        self._trade_stream: RunningStream | None = None
        self._trade_connects = 0
        self._watchdog: asyncio.Task[None] | None = None

    def on_bar(self, bar: Bar, trade_count: Any, vwap: Any) -> None:
        """The bar stream's callback: the stream is alive, whatever the bar holds."""
        self._report.bars += 1
        end = bar.ts + MINUTE
        if end > self.last_seen:
            self.last_seen = end
        self._deliver(bar, trade_count, vwap)

    def start(self) -> None:
        """Start both streams and the watchdog (on the running loop)."""
        self._start_bar_stream()
        self._trade_stream = self._feeds.trade_updates(self._on_trade_update, on_connect=self._trade_connected,
                                                       backoff=self._trade_backoff)
        self._watchdog = asyncio.create_task(self._watch())

    async def subscribed(self) -> None:
        """Until the bar stream's subscription is acknowledged (at most ``SUBSCRIBE_WAIT``)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._subscribed.wait(), SUBSCRIBE_WAIT)

    async def stop(self) -> None:
        """Stop the watchdog and both streams."""
        if self._watchdog is not None:
            self._watchdog.cancel()
        if self._bar_stream is not None:
            await self._bar_stream.stop()
        if self._trade_stream is not None:
            await self._trade_stream.stop()

    def _bar_connecting(self) -> None:
        self.connects += 1

    def _bar_subscribed(self) -> None:
        self._on_subscribed(cached_now(self._clock))
        self._subscribed.set()

    def _start_bar_stream(self) -> None:
        self._bar_stream = self._feeds.bars(self._universe, self.on_bar, on_connect=self._bar_connecting,
                                            on_subscribed=self._bar_subscribed, backoff=BAR_BACKOFF,
                                            on_corrected=self._on_corrected, on_status=self._on_status)

    def _trade_connected(self) -> None:
        self._trade_connects += 1
        if self._trade_connects > 1:  # fills made while it was down were never sent: ask the broker
            self._report.trade_stream_reconnects += 1
            asyncio.get_running_loop().call_later(RECOVERY_DELAY, self._on_trade_reconnect)

    async def _watch(self) -> None:
        """Restart the bar stream when it has been silent for ``silence`` of market time."""
        while True:
            await asyncio.sleep(0.1)
            try:
                now = await self._clock.anow()
            except Exception:
                continue
            if now < self._day.open or now >= self._day.close:
                continue
            if now - self.last_seen <= self._silence:
                continue
            log.warning("bar stream silent since %s (market %s): restarting it", self.last_seen, now)
            self._report.stream_restarts += 1
            self._recorder.event("stream_restart", {"last_bar_end": self.last_seen, "market_time": now})
            self.last_seen = now
            assert self._bar_stream is not None
            await self._bar_stream.stop()
            self._start_bar_stream()
