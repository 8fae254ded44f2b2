"""Stream supervision: the bar and trade-update streams started, counted, watched, restarted, stopped.

This is the only module that touches alpaca-py's stream internals (``_start_ws``, ``_dispatch``,
``_run_forever``, ``_reconnect_*``): it counts connections, sees the bar subscription acknowledged and
sets the reconnect backoff. Bars leave here as :class:`Bar`; trade updates as the stream's raw dicts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from openbell.alpaca import AlpacaConfig
from openbell.calendar import Session
from openbell.clock import MarketClock
from openbell.session.minutes import MINUTE
from openbell.session.recording import Recorder
from openbell.session.report import SessionReport
from openbell.strategy import Bar

log = logging.getLogger(__name__)

RECOVERY_DELAY = 0.1  # wall seconds after the trade stream reconnects, so it is listening again
SUBSCRIBE_WAIT = 5.0  # wall seconds the first catch-up waits for the bar stream's subscription

OnBar = Callable[[Bar, Any, Any], None]  # (bar, trade_count, vwap)
OnTradeUpdate = Callable[[dict[str, Any]], Awaitable[None]]


def _price(value: Any) -> float:
    """A streamed number as a float; a missing or unreadable one becomes NaN (the bar check refuses it)."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


class Streams:
    """The session's two streams. ``last_seen`` is the end of the newest streamed minute (or when the
    watchdog last restarted the bar stream); a bar stream silent for ``silence`` of market time is
    restarted. A trade stream that reconnects calls ``on_trade_reconnect`` (fills may have been missed)."""

    def __init__(
        self,
        config: AlpacaConfig,
        session: Session,
        universe: Sequence[str],
        clock: MarketClock,
        recorder: Recorder,
        report: SessionReport,
        *,
        on_bar: OnBar,
        on_trade_update: OnTradeUpdate,
        on_trade_reconnect: Callable[[], None],
        silence: timedelta,
        trade_backoff: tuple[float, float],
    ) -> None:
        self._config = config
        self._session = session
        self._universe = universe
        self._clock = clock
        self._recorder = recorder
        self._report = report
        self._deliver = on_bar
        self._on_trade_update = on_trade_update
        self._on_trade_reconnect = on_trade_reconnect
        self._silence = silence
        self._trade_backoff = trade_backoff  # wall seconds between reconnect attempts
        self.last_seen: datetime = session.open
        self.connects = 0  # bar stream connections, the first one included
        self._subscribed = asyncio.Event()
        self._bar_stream: Any = None
        self._bar_task: asyncio.Task[None] | None = None
        self._trade_stream: Any = None
        self._trade_task: asyncio.Task[None] | None = None
        self._watchdog: asyncio.Task[None] | None = None

    async def on_bar(self, raw: Any) -> None:
        """The bar stream's handler: the stream is alive, whatever the bar holds."""
        self._report.bars += 1
        if raw.timestamp + MINUTE > self.last_seen:
            self.last_seen = raw.timestamp + MINUTE
        bar = Bar(raw.symbol, raw.timestamp, _price(raw.open), _price(raw.high), _price(raw.low),
                  _price(raw.close), _price(raw.volume))
        self._deliver(bar, raw.trade_count, raw.vwap)

    def start(self) -> None:
        """Start both streams and the watchdog (on the running loop)."""
        self._start_bar_stream()
        self._start_trade_stream()
        self._watchdog = asyncio.create_task(self._watch())

    async def subscribed(self) -> None:
        """Until the bar stream's subscription is acknowledged (at most ``SUBSCRIBE_WAIT``)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._subscribed.wait(), SUBSCRIBE_WAIT)

    async def stop(self) -> None:
        """Stop the watchdog and both streams."""
        if self._watchdog is not None:
            self._watchdog.cancel()
        if self._bar_task is not None:
            await self._kill(self._bar_stream, self._bar_task)
        if self._trade_task is not None:
            await self._kill(self._trade_stream, self._trade_task)

    def _counting(self, stream: Any) -> None:
        original: Callable[[], Any] = stream._start_ws

        async def start_ws() -> None:
            self.connects += 1
            await original()

        stream._start_ws = start_ws
        stream._reconnect_min_backoff = 0.25  # market minutes pass fast in simulation; 406 is retried
        stream._reconnect_max_backoff = 5.0

    def _start_bar_stream(self) -> None:
        stream: Any = self._config.data_stream()
        self._counting(stream)
        original: Callable[[dict[str, Any]], Any] = stream._dispatch

        async def dispatch(msg: dict[str, Any]) -> None:
            if msg.get("T") == "subscription":  # the server's ack: every later bar will be sent
                self._subscribed.set()
            await original(msg)

        stream._dispatch = dispatch
        stream.subscribe_bars(self.on_bar, *self._universe)
        self._bar_stream = stream
        self._bar_task = asyncio.create_task(stream._run_forever())

    def _start_trade_stream(self) -> None:
        stream: Any = self._config.trading_stream(raw_data=True)
        stream._reconnect_min_backoff, stream._reconnect_max_backoff = self._trade_backoff
        original: Callable[[], Any] = stream._start_ws
        connects = 0

        async def start_ws() -> None:
            nonlocal connects
            await original()
            connects += 1
            if connects > 1:  # fills made while it was down were never sent: ask the broker
                self._report.trade_stream_reconnects += 1
                asyncio.get_running_loop().call_later(RECOVERY_DELAY, self._on_trade_reconnect)

        stream._start_ws = start_ws
        stream.subscribe_trade_updates(self._on_trade_update)
        self._trade_stream = stream
        self._trade_task = asyncio.create_task(stream._run_forever())

    async def _kill(self, stream: Any, task: asyncio.Task[None]) -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError, Exception):
            await asyncio.wait_for(asyncio.shield(task), timeout=2.0)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(stream.close(), timeout=2.0)

    async def _watch(self) -> None:
        """Restart the bar stream when it has been silent for ``silence`` of market time."""
        while True:
            await asyncio.sleep(0.1)
            try:
                now = await self._clock.anow()
            except Exception:
                continue
            if now < self._session.open or now >= self._session.close:
                continue
            if now - self.last_seen <= self._silence:
                continue
            log.warning("bar stream silent since %s (market %s): restarting it", self.last_seen, now)
            self._report.stream_restarts += 1
            self._recorder.event("stream_restart", {"last_bar_end": self.last_seen, "market_time": now})
            self.last_seen = now
            assert self._bar_task is not None
            await self._kill(self._bar_stream, self._bar_task)
            self._start_bar_stream()
