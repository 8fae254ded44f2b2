"""The stream port on alpaca-py's ``StockDataStream`` and ``TradingStream``.

This is the only module that touches the streams' internals: ``_start_ws`` (to report each connection),
``_dispatch`` (to see the bar subscription acknowledged), ``_reconnect_min_backoff``/``_reconnect_max_backoff``
(the reconnect backoff) and ``_run_forever`` (run as a task of the caller's loop). Bars leave as
:class:`~openbell.strategy.Bar`, trade updates as :class:`~openbell.ports.TradeNotice`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from openbell.adapters.alpaca.config import AlpacaConfig
from openbell.adapters.alpaca.convert import price, read_trade_update, trade_notice
from openbell.ports import OnBar, OnStatus, OnTrade, TradeReport
from openbell.strategy.base import Bar

STOP_TIMEOUT = 2.0  # wall seconds a stopping stream may take to finish, then to close its socket


def bar_handler(on_bar: OnBar) -> Callable[[Any], Awaitable[None]]:
    """The bar subscription's handler: each alpaca-py Bar to ``on_bar(bar, trade_count, vwap)``."""

    async def handler(raw: Any) -> None:
        on_bar(Bar(raw.symbol, raw.timestamp, price(raw.open), price(raw.high), price(raw.low), price(raw.close),
                   price(raw.volume)), raw.trade_count, raw.vwap)

    return handler


def status_handler(on_status: OnStatus) -> Callable[[Any], Awaitable[None]]:
    """The trading-status subscription's handler: each alpaca-py TradingStatus to
    ``on_status(symbol, status_code, reason_code)``."""

    async def handler(raw: Any) -> None:
        on_status(str(raw.symbol), str(raw.status_code or ""), str(raw.reason_code or ""))

    return handler


def trade_handler(on_update: OnTrade) -> Callable[[dict[str, Any]], Awaitable[None]]:
    """The trade-update subscription's handler (raw messages): each one to ``on_update`` as a notice."""

    async def handler(msg: dict[str, Any]) -> None:
        on_update(trade_notice(msg))

    return handler


class AlpacaStream:
    """A stream running as a task of the loop that started it."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.task: asyncio.Task[None] = asyncio.create_task(stream._run_forever())

    async def stop(self) -> None:
        """Cancel the task, then close the socket, each within ``STOP_TIMEOUT``."""
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError, Exception):
            await asyncio.wait_for(asyncio.shield(self.task), timeout=STOP_TIMEOUT)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.stream.close(), timeout=STOP_TIMEOUT)


class AlpacaStreams:
    """:class:`~openbell.ports.StreamPort` on the connection's data feed and trade-update stream."""

    def __init__(self, config: AlpacaConfig) -> None:
        self.config = config

    def bars(self, symbols: Sequence[str], on_bar: OnBar, *, on_connect: Callable[[], None],
             on_subscribed: Callable[[], None], backoff: tuple[float, float],
             on_corrected: OnBar | None = None, on_status: OnStatus | None = None) -> AlpacaStream:
        """Start a bar stream (on the running loop); ``on_connect`` runs before each connection attempt."""
        stream: Any = self.config.data_stream()
        start_ws: Callable[[], Awaitable[None]] = stream._start_ws

        async def counted_start_ws() -> None:
            on_connect()
            await start_ws()

        stream._start_ws = counted_start_ws
        stream._reconnect_min_backoff, stream._reconnect_max_backoff = backoff
        dispatch: Callable[[dict[str, Any]], Awaitable[None]] = stream._dispatch

        async def watched_dispatch(msg: dict[str, Any]) -> None:
            if msg.get("T") == "subscription":  # the server's ack: every later bar will be sent
                on_subscribed()
            await dispatch(msg)

        stream._dispatch = watched_dispatch
        stream.subscribe_bars(bar_handler(on_bar), *symbols)
        if on_corrected is not None:  # Alpaca's updatedBars: a bar re-sent after late trades
            stream.subscribe_updated_bars(bar_handler(on_corrected), *symbols)
        if on_status is not None:  # halts (LULD pauses included) and resumptions
            stream.subscribe_trading_statuses(status_handler(on_status), *symbols)
        return AlpacaStream(stream)

    def trade_updates(self, on_update: OnTrade, *, on_connect: Callable[[], None],
                      backoff: tuple[float, float]) -> AlpacaStream:
        """Start the trade-update stream (raw messages); ``on_connect`` runs once each connection listens."""
        stream: Any = self.config.trading_stream(raw_data=True)
        stream._reconnect_min_backoff, stream._reconnect_max_backoff = backoff
        start_ws: Callable[[], Awaitable[None]] = stream._start_ws

        async def counted_start_ws() -> None:
            await start_ws()
            on_connect()

        stream._start_ws = counted_start_ws
        stream.subscribe_trade_updates(trade_handler(on_update))
        return AlpacaStream(stream)

    def read(self, raw: Any) -> TradeReport:
        """A notice's raw update as alpaca-py parses it (:func:`.convert.read_trade_update`)."""
        return read_trade_update(raw)
