"""StockDataStream and TradingStream (alpaca-py) against a live simulator, with injected faults."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from itertools import pairwise

import pytest
from alpaca.data.live import StockDataStream
from alpaca.data.requests import StockBarsRequest
from alpaca.data.timeframe import TimeFrame
from alpaca.trading.enums import OrderSide, TimeInForce
from alpaca.trading.requests import MarketOrderRequest
from sim_helpers import run_until, within_rate_limit

from openbell.sim.market import LEVERAGED, session_bars
from openbell.sim.testing import SimProcess

SPEED = 300  # a market minute every 0.2 s


@pytest.fixture(scope="module")
def sim() -> Iterator[SimProcess]:
    with SimProcess(date="2025-11-20", speed=SPEED, start="09:30", extra_args=["--dense", "--corrections", "0"]) as s:
        yield s
        within_rate_limit(s)


class Bars:
    """Bars received by one stream, by kind."""

    def __init__(self) -> None:
        self.bars: list[object] = []
        self.daily: list[object] = []

    async def on_bar(self, bar: object) -> None:
        self.bars.append(bar)

    async def on_daily(self, bar: object) -> None:
        self.daily.append(bar)

    def minutes(self) -> list[datetime]:
        return sorted({b.timestamp for b in self.bars})  # type: ignore[attr-defined]


def market_now(sim: SimProcess) -> datetime:
    c = sim.clock()
    wall = datetime.fromisoformat(c["wall_time"]).timestamp()
    return datetime.fromisoformat(c["market_time"]) + timedelta(seconds=(time.time() - wall) * c["speed"])


def test_bars_every_minute_match_history_and_daily_bars(sim: SimProcess) -> None:
    got = Bars()
    stream = sim.config().data_stream()
    stream.subscribe_bars(got.on_bar, *LEVERAGED)
    stream.subscribe_daily_bars(got.on_daily, "SPY")
    stream.subscribe_updated_bars(got.on_bar, "QQQ")
    assert asyncio.run(run_until(stream, lambda: len(got.minutes()) >= 5))
    minutes = got.minutes()
    assert all(m.second == 0 for m in minutes)
    assert all(b - a == timedelta(minutes=1) for a, b in pairwise(minutes))
    full = [m for m in minutes[:-1]]
    for m in full:
        assert {b.symbol for b in got.bars if b.timestamp == m} == set(LEVERAGED)  # type: ignore[attr-defined]
    time.sleep(0.3)
    dc = sim.config().data_client()
    hist = dc.get_stock_bars(StockBarsRequest(symbol_or_symbols="TQQQ", timeframe=TimeFrame.Minute,
                                              start=minutes[0], end=minutes[-1])).data["TQQQ"]
    live = sorted((b for b in got.bars if b.symbol == "TQQQ"), key=lambda b: b.timestamp)  # type: ignore[attr-defined]
    assert [(b.timestamp, b.open, b.close, b.volume, b.vwap) for b in live] == \
        [(b.timestamp, b.open, b.close, b.volume, b.vwap) for b in hist]
    assert got.daily and got.daily[-1].symbol == "SPY"  # type: ignore[attr-defined]
    day = got.daily[-1]
    assert day.timestamp.hour == 5 and day.volume > max(b.volume for b in got.bars if b.symbol == "SSO")  # type: ignore[attr-defined]


def test_fragmented_subscribe_of_many_symbols(sim: SimProcess) -> None:
    got = Bars()
    stream = sim.config().data_stream()
    fake = [f"X{i:05d}" for i in range(6000)]  # > 32 KiB: the SDK sends several fragments
    stream.subscribe_bars(got.on_bar, "SPY", *fake)
    assert asyncio.run(run_until(stream, lambda: len(got.minutes()) >= 2))
    assert {b.symbol for b in got.bars} == {"SPY"}  # type: ignore[attr-defined]


def test_dropped_stream_reconnects_and_bars_continue(sim: SimProcess) -> None:
    got = Bars()
    stream = sim.config().data_stream()
    stream.subscribe_bars(got.on_bar, "SPY", "SQQQ")
    before = sim.faults()["counters"]["stream_connections_dropped"]
    drop_at = (market_now(sim) + timedelta(minutes=10)).replace(second=0, microsecond=0)
    sim.set_faults(drop_streams_at=[drop_at.strftime("%H:%M")])
    try:
        assert asyncio.run(run_until(stream, lambda: any(m > drop_at + timedelta(minutes=2)
                                                         for m in got.minutes()), timeout=20))
    finally:
        sim.set_faults(drop_streams_at=[])
    assert sim.faults()["counters"]["stream_connections_dropped"] >= before + 1
    minutes = got.minutes()
    assert any(m < drop_at for m in minutes) and any(m > drop_at for m in minutes)


def test_second_connection_gets_406_and_bad_key_402(sim: SimProcess) -> None:
    async def scenario() -> tuple[str, str]:
        got = Bars()
        first = sim.config().data_stream()
        first.subscribe_bars(got.on_bar, "SPY")
        task = asyncio.create_task(first._run_forever())
        while not got.bars:
            await asyncio.sleep(0.02)
        second = sim.config().data_stream()
        try:
            await second._start_ws()
            limit = "connected"
        except ValueError as exc:
            limit = str(exc)
        finally:
            await second.close()
        bad = StockDataStream(sim.key, "not-the-secret", url_override=sim.base_url.replace("http", "ws") + "/v2/iex")
        try:
            await bad._start_ws()
            auth = "connected"
        except ValueError as exc:
            auth = str(exc)
        finally:
            await bad.close()
        await first.stop_ws()
        await asyncio.wait_for(task, 10)
        return limit, auth

    before = sim.faults()["counters"]["connection_limit_refusals"]
    assert asyncio.run(scenario()) == ("connection limit exceeded", "auth failed")
    assert sim.faults()["counters"]["connection_limit_refusals"] == before + 1


def test_sip_without_subscription_gets_409(sim: SimProcess) -> None:
    async def attempt() -> str:
        s = StockDataStream(sim.key, sim.secret, url_override=sim.base_url.replace("http", "ws") + "/v2/sip")
        try:
            await s._start_ws()
            return "connected"
        except ValueError as exc:
            return str(exc)
        finally:
            await s.close()

    assert asyncio.run(attempt()) == "connected"
    sim.set_faults(sip_allowed=False)
    try:
        assert asyncio.run(attempt()) == "insufficient subscription"
    finally:
        sim.set_faults(sip_allowed=True)


def test_refused_reconnect_then_recovers(sim: SimProcess) -> None:
    got = Bars()
    stream = sim.config().data_stream()
    stream.subscribe_bars(got.on_bar, "TNA")
    before = sim.faults()["counters"]["reconnects_refused"]
    # The SDK's first reconnect comes 0.5-1 s after the drop: well inside a 3 s refusal window.
    sim.set_faults(refuse_reconnect_seconds=3.0)

    async def scenario() -> bool:
        task = asyncio.create_task(stream._run_forever())
        try:
            while not got.bars:
                await asyncio.sleep(0.02)
            await asyncio.to_thread(sim.set_faults, drop_streams_now=True)
            dropped_at = len(got.bars)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and len(got.bars) < dropped_at + 3:
                await asyncio.sleep(0.05)
            return len(got.bars) >= dropped_at + 3
        finally:
            await stream.stop_ws()
            await asyncio.wait_for(task, 10)

    try:
        assert asyncio.run(scenario())
    finally:
        sim.set_faults(refuse_reconnect_seconds=0)
    assert sim.faults()["counters"]["reconnects_refused"] >= before + 1


def test_silence_keeps_connection_but_withholds_bars(sim: SimProcess) -> None:
    got = Bars()
    stream = sim.config().data_stream()
    stream.subscribe_bars(got.on_bar, "ERX")
    counters = sim.faults()["counters"]
    # two wall seconds ahead: a silence_at minute that has passed when the request lands never starts
    start = (market_now(sim) + timedelta(minutes=10)).replace(second=0, microsecond=0)
    sim.set_faults(silence_at=[f"{start:%H:%M}:4"])
    try:
        assert asyncio.run(run_until(stream, lambda: any(m >= start + timedelta(minutes=5) for m in got.minutes()),
                                     timeout=20))
    finally:
        sim.set_faults(silence_at=[])
    after = sim.faults()["counters"]
    minutes = got.minutes()
    gaps = [b - a for a, b in pairwise(minutes)]
    assert timedelta(minutes=5) in gaps and max(gaps) == timedelta(minutes=5)
    assert after["silent_minutes"] == counters["silent_minutes"] + 4
    assert after["stream_connections_dropped"] == counters["stream_connections_dropped"]


def _trade_events(sim: SimProcess, submit: Callable[[], None], until: Callable[[list[object]], bool]) -> list[object]:
    events: list[object] = []

    async def on_update(u: object) -> None:
        events.append(u)

    async def scenario() -> None:
        stream = sim.config().trading_stream()
        stream.subscribe_trade_updates(on_update)
        task = asyncio.create_task(stream._run_forever())
        await asyncio.sleep(0.5)  # authorized and listening
        await asyncio.to_thread(submit)
        deadline = time.monotonic() + 10
        while not until(events) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        await stream.stop_ws()
        await stream.close()  # wakes the SDK's 5 s receive wait
        await asyncio.wait_for(task, 10)

    asyncio.run(scenario())
    return events


def mkt(symbol: str, qty: float, cid: str, side: str = "buy") -> MarketOrderRequest:
    return MarketOrderRequest(symbol=symbol, qty=qty, side=OrderSide(side), time_in_force=TimeInForce.DAY,
                              client_order_id=cid)


def test_trade_updates_new_and_fill_with_unique_execution_ids(sim: SimProcess) -> None:
    tc = sim.config().trading_client()
    sim.set_faults(partial_fills=True)
    try:
        events = _trade_events(
            sim,
            lambda: [tc.submit_order(mkt("UVXY", 10, "tu-1")), tc.submit_order(mkt("SVXY", 1, "tu-2"))],
            lambda ev: sum(1 for e in ev if e.event == "fill") >= 2,  # type: ignore[attr-defined]
        )
    finally:
        sim.set_faults(partial_fills=False)
    by_order = [(e.order.client_order_id, e.event) for e in events]  # type: ignore[attr-defined]
    assert by_order.count(("tu-1", "new")) == 1 and by_order.count(("tu-2", "new")) == 1
    assert [ev for cid, ev in by_order if cid == "tu-1"] == ["new", "partial_fill", "fill"]
    fills = [e for e in events if e.event in ("fill", "partial_fill")]  # type: ignore[attr-defined]
    assert len({e.execution_id for e in fills}) == len(fills) == 3  # type: ignore[attr-defined]
    last = [e for e in fills if e.order.client_order_id == "tu-1"]  # type: ignore[attr-defined]
    assert [e.qty for e in last] == [5, 5] and last[-1].position_qty == 10  # type: ignore[attr-defined]
    assert last[-1].order.status == "filled" and last[0].order.status == "partially_filled"  # type: ignore[attr-defined]


def test_trade_updates_rejected(sim: SimProcess) -> None:
    tc = sim.config().trading_client()
    sim.set_faults(reject_symbols=["IWM"])
    try:
        events = _trade_events(sim, lambda: tc.submit_order(mkt("IWM", 1, "rej-1")),
                               lambda ev: any(e.event == "rejected" for e in ev))  # type: ignore[attr-defined]
    finally:
        sim.set_faults(reject_symbols=[])
    assert [e.event for e in events] == ["new", "rejected"]  # type: ignore[attr-defined]
    assert tc.get_order_by_client_id("rej-1").status == "rejected"
    assert sim.faults()["counters"]["orders_rejected"] >= 1


def test_trade_updates_accepted_and_canceled(closed_sim: SimProcess) -> None:
    tc = closed_sim.config().trading_client()
    events = _trade_events(closed_sim, lambda: tc.cancel_order_by_id(tc.submit_order(mkt("XLE", 2, "cx-1")).id),
                           lambda ev: any(e.event == "canceled" for e in ev))  # type: ignore[attr-defined]
    assert [e.event for e in events] == ["accepted", "canceled"]  # type: ignore[attr-defined]
    assert events[-1].order.canceled_at is not None  # type: ignore[attr-defined]


def test_silence_now_withholds_the_next_minutes_whenever_it_lands(sim: SimProcess) -> None:
    got = Bars()
    stream = sim.config().data_stream()
    stream.subscribe_bars(got.on_bar, "ERX")
    before = sim.faults()["counters"]

    async def scenario() -> bool:
        async def silence_once_bars_flow() -> None:
            while len(got.minutes()) < 2:
                await asyncio.sleep(0.02)
            await asyncio.to_thread(sim.set_faults, silence_now=3)

        task = asyncio.create_task(silence_once_bars_flow())
        gap = timedelta(minutes=4)
        return await run_until(stream, lambda: task.done() and gap in [b - a for a, b in pairwise(got.minutes())],
                               timeout=20)

    assert asyncio.run(scenario())
    after = sim.faults()["counters"]
    gaps = [b - a for a, b in pairwise(got.minutes())]
    assert max(gaps) == timedelta(minutes=4) and gaps.count(timedelta(minutes=4)) == 1
    assert after["silence_windows"] == before["silence_windows"] + 1
    assert after["silent_minutes"] == before["silent_minutes"] + 3


def test_fault_settings_are_validated(sim: SimProcess) -> None:
    with pytest.raises(ValueError, match="rest_error_rate"):
        sim.set_faults(rest_error_rate=3)
    with pytest.raises(ValueError, match="unknown fault"):
        sim.set_faults(explode=True)
    with pytest.raises(ValueError, match="HH:MM"):
        sim.set_faults(drop_streams_at=["25:99"])
    for bad in (0, 2.5, True, "3", 391):
        with pytest.raises(ValueError, match="silence_now must be a whole number of minutes"):
            sim.set_faults(silence_now=bad)
    assert sim.faults()["settings"]["rest_error_rate"] == 0


def test_order_queued_while_closed_fills_at_the_open() -> None:
    with SimProcess(date="2025-11-20", speed=20, start="09:29") as early:
        tc = early.config().trading_client()
        events = _trade_events(early, lambda: tc.submit_order(mkt("TZA", 7, "open-1")),
                               lambda ev: any(e.event == "fill" for e in ev))  # type: ignore[attr-defined]
    assert [e.event for e in events] == ["accepted", "new", "fill"]  # type: ignore[attr-defined]
    fill = events[-1]
    first_bar = session_bars(["TZA"], "2025-11-20").iloc[0]
    assert fill.order.filled_at.replace(second=0, microsecond=0) == first_bar["timestamp"]  # type: ignore[attr-defined]
    assert fill.price == first_bar["open"] and fill.position_qty == 7  # type: ignore[attr-defined]
