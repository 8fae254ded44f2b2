"""Driving the live loop's parts against a real simulator and Postgres, as ``TradingAttempt.run`` drives them:
a session prepared and attached (writer, helper pool, order workers), then what a stream or the decider
would hand in. Shared by the money-safety, rejection and pre-trade-limit tests; the simulator and the stored
bars a whole attempt starts from (:func:`sim_run`, :func:`store_history`) by the live session tests too."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

from alpaca.trading.enums import QueryOrderStatus
from alpaca.trading.models import Order
from alpaca.trading.requests import GetOrdersRequest
from sqlalchemy import Engine, text

from dates import SESSION
from openbell.adapters.alpaca.config import AlpacaConfig
from openbell.adapters.alpaca.data import AlpacaMarketData
from openbell.adapters.alpaca.venue import alpaca_venue
from openbell.calendar import previous_sessions, session
from openbell.clock import MarketClock, clock_for
from openbell.ports import Window
from openbell.sim.testing import SimProcess
from openbell.store.bars import upsert_bars
from openbell.trading import TradingAttempt
from openbell.trading.sender import OrderSender
from openbell.trading.settings import LoopSettings
from openbell.trading.writer import Writer

UNIVERSE = ["SSO", "TQQQ"]


@asynccontextmanager
async def prepared(sim: SimProcess, engine: Engine, *, setup: Callable[[TradingAttempt], None] | None = None,
                   **options: Any) -> AsyncIterator[TradingAttempt]:
    """A TradingAttempt (``options`` are its own) prepared and attached as ``run`` attaches it; ``setup`` sees
    it before it is attached."""
    s = session(SESSION)
    assert s is not None
    config = sim.config()
    clock = store_history(engine, config, UNIVERSE)
    settings = LoopSettings(universe=UNIVERSE, warmup_sessions=1, **options)
    live = TradingAttempt(alpaca_venue(config), engine, s, settings, clock=clock)
    if setup is not None:
        setup(live)
    sender = OrderSender(live.broker, live.dispatch.on_sent, workers=1, threads=2)
    live.attach(asyncio.get_running_loop(), Writer(engine), ThreadPoolExecutor(2), sender)
    live.phase.start()
    await asyncio.gather(asyncio.to_thread(live.prepare), asyncio.to_thread(sender.start))
    try:
        yield live
    finally:
        live.threads.closing = True
        sender.close()
        live.phase.stop()
        live.threads.pool.shutdown(wait=True)
        live.recorder.flush()
        live.recorder.writer.close(timeout=30.0)


async def until(check: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    give_up = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < give_up, f"never happened: {what}"
        await asyncio.sleep(0.02)


async def flushed(live: TradingAttempt) -> None:
    """Everything queued so far is in Postgres."""
    await asyncio.sleep(0.05)
    live.recorder.flush()
    await asyncio.to_thread(live.recorder.writer.flush, 10.0)


def rows(engine: Engine, sql: str, **params: Any) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(text(sql), params).all())


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(scenario())


def sim_run(tmp_path: Path, args: Sequence[str] = (), *, date_: str = "2025-11-20", speed: float = 1,
            start: str = "11:00") -> SimProcess:
    """A simulator of ``date_`` keeping its data under ``tmp_path``, by default at 1x from 11:00 (the market barely
    moves while a test places its decisions)."""
    return SimProcess(date=date_, speed=speed, start=start, data_dir=tmp_path / "sim", extra_args=list(args))


def store_history(engine: Engine, config: AlpacaConfig, universe: Sequence[str], *, sessions: int = 1,
                  lag: timedelta = timedelta(0)) -> MarketClock:
    """What the download step leaves before trading starts: the bars of ``universe`` from the open of the
    ``sessions`` sessions before SESSION until ``lag`` before the simulator's market time; the simulator's clock."""
    clock = clock_for(config)
    prior = previous_sessions(SESSION, sessions)
    upsert_bars(engine, AlpacaMarketData(config).bars(list(universe), Window(prior[0].open, clock.now() - lag)),
                source="rest")
    return clock


def broker_orders(sim: SimProcess) -> list[Order]:
    found = sim.config().trading_client().get_orders(GetOrdersRequest(status=QueryOrderStatus.ALL, limit=500))
    return list(found)  # type: ignore[arg-type]
