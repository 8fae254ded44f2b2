"""The broker as Alpaca runs it, through alpaca-py: halts (--halt), the request limit (--rate-limit),
rejections with Alpaca's codes (--trading-blocked, --not-tradable, --not-fractionable, buying power, wash
trades), the account without pattern-day-trader fields, seeded positions of any kind (--seed-position)
and positions across a split (--split)."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from alpaca.common.exceptions import APIError
from alpaca.data.enums import DataFeed
from alpaca.data.requests import StockBarsRequest, StockLatestBarRequest
from alpaca.data.timeframe import TimeFrame
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import AssetExchange, OrderStatus
from alpaca.trading.models import TradeAccount
from sim_helpers import market_clock, order, raw, run_until, wait_status, within_rate_limit

from openbell.sim.testing import SimProcess


def _at(hhmm: str) -> datetime:
    return datetime.fromisoformat(f"2025-11-20T{hhmm}:00-05:00")


def _wait_market(sim: SimProcess, until: datetime) -> None:
    now = market_clock(sim)
    while now() < until:
        time.sleep(0.02)


def _minutes(sim: SimProcess, symbol: str, start: datetime, end: datetime, feed: DataFeed) -> list[datetime]:
    dc = sim.config().data_client(raw_data=True)
    bars = dc.get_stock_bars(StockBarsRequest(symbol_or_symbols=symbol, timeframe=TimeFrame.Minute, start=start,
                                              end=end, feed=feed)).get(symbol, [])
    return [datetime.fromisoformat(b["t"]) for b in bars]


def test_a_halt_is_announced_has_no_bars_and_holds_orders_until_the_resumption() -> None:
    args = ["--halt", "ERY:09:33-09:36", "--halt", "ERX:09:34-09:54", "--halt", "TQQQ:09:33-09:35",
            "--halt", "SQQQ:09:34-09:54", "--halt", "UVXY:09:33-09:35", "--sparse"]
    with SimProcess(speed=120, start="09:31", extra_args=args) as sim:
        tc = sim.config().trading_client()
        listed = {s: tc.get_asset(s).exchange for s in ("ERY", "ERX", "TQQQ", "SQQQ", "UVXY")}
        assert listed == {"ERY": AssetExchange.ARCA, "ERX": AssetExchange.ARCA, "TQQQ": AssetExchange.NASDAQ,
                          "SQQQ": AssetExchange.NASDAQ, "UVXY": AssetExchange.BATS}
        statuses: list[object] = []
        bars: list[object] = []
        held: list[object] = []

        async def on_status(s: object) -> None:
            statuses.append(s)
            if s.symbol == "ERY" and s.status_code == "2":  # type: ignore[attr-defined]
                held.append(await asyncio.to_thread(tc.submit_order, order("ERY", qty=3, cid="during-halt")))
                await asyncio.sleep(0.25)  # half a market minute: still halted
                held.append(await asyncio.to_thread(tc.get_order_by_id, held[0].id))  # type: ignore[attr-defined]

        async def on_bar(b: object) -> None:
            bars.append(b)

        stream = sim.config().data_stream()
        stream.subscribe_trading_statuses(on_status, "ERY", "ERX", "TQQQ", "SQQQ", "UVXY")
        stream.subscribe_bars(on_bar, "ERY", "ERX", "SPY")
        assert asyncio.run(run_until(stream, lambda: any(b.symbol == "SPY" and b.timestamp >= _at("09:37")  # type: ignore[attr-defined]
                                                         for b in bars), timeout=20))
        got = sorted((s.timestamp, s.symbol, s.status_code, s.status_message, s.reason_code, s.reason_message,  # type: ignore[attr-defined]
                      s.tape) for s in statuses)  # type: ignore[attr-defined]
        luld = "Limit Up-Limit Down (LULD) Trading Pause"
        assert got == [  # Tape A/B (NYSE Arca, Cboe) halts are 2 and 3, Tape C (Nasdaq) ones P or H, and T
            (_at("09:33"), "ERY", "2", "Trading Halt", "M", luld, "B"),
            (_at("09:33"), "TQQQ", "P", "Volatility Trading Pause", "LUDP", "Volatility Trading Pause", "C"),
            (_at("09:33"), "UVXY", "2", "Trading Halt", "M", luld, "B"),
            (_at("09:34"), "ERX", "2", "Trading Halt", "P", "News Pending", "B"),
            (_at("09:34"), "SQQQ", "H", "Trading Halt", "T1", "Halt News Pending", "C"),
            (_at("09:35"), "TQQQ", "T", "Trading Resumption", "LUDP", "Volatility Trading Pause", "C"),
            (_at("09:35"), "UVXY", "3", "Resume", "M", luld, "B"),
            (_at("09:36"), "ERY", "3", "Resume", "M", luld, "B"),
        ]
        halted = {_at("09:33"), _at("09:34"), _at("09:35")}
        assert not {b.timestamp for b in bars if b.symbol == "ERY"} & halted  # type: ignore[attr-defined]
        assert not [b for b in bars if b.symbol == "ERX" and b.timestamp >= _at("09:34")]  # type: ignore[attr-defined]
        spy = sorted(b.timestamp for b in bars if b.symbol == "SPY")  # type: ignore[attr-defined]
        assert spy == [spy[0] + timedelta(minutes=i) for i in range(len(spy))]
        for feed in (DataFeed.IEX, DataFeed.SIP):  # REST has no bar while halted either
            assert not set(_minutes(sim, "ERY", _at("09:30"), _at("09:37"), feed)) & halted
        assert held[0].status == OrderStatus.NEW and held[1].status == OrderStatus.NEW  # type: ignore[attr-defined]
        filled = wait_status(tc, held[0].id, OrderStatus.FILLED)  # type: ignore[attr-defined]
        assert filled.status == OrderStatus.FILLED and filled.filled_at >= _at("09:36")
        dc = sim.config().data_client(raw_data=True)
        reopen = dc.get_stock_bars(StockBarsRequest(symbol_or_symbols="ERY", timeframe=TimeFrame.Minute,
                                                    start=_at("09:36"), end=_at("09:36"), feed=DataFeed.SIP))["ERY"]
        assert float(filled.filled_avg_price) == reopen[0]["o"]  # the reopening price


def test_held_day_orders_expire_when_a_halt_runs_to_the_close() -> None:
    args = ["--halt", "FAZ:15:57-close", "--seed-position", "FAZ:10"]
    with SimProcess(speed=120, start="15:56", extra_args=args) as sim:
        tc = sim.config().trading_client()
        _wait_market(sim, _at("15:57") + timedelta(seconds=10))
        sell = tc.submit_order(order("FAZ", side="sell", qty=10, cid="halted-close"))
        assert sell.status == OrderStatus.NEW
        _wait_market(sim, _at("16:00") + timedelta(seconds=15))
        assert tc.get_order_by_id(sell.id).status == OrderStatus.EXPIRED
        assert tc.get_open_position("FAZ").qty == "10"
        assert not [t for t in _minutes(sim, "FAZ", _at("15:50"), _at("16:00"), DataFeed.SIP) if t >= _at("15:57")]
        after = tc.submit_order(order("FAZ", side="sell", qty=10, cid="after-close"))
        assert after.status == OrderStatus.ACCEPTED  # queued for the next open, as before any halt


def test_the_trading_api_is_limited_per_minute_with_rate_limit_headers() -> None:
    with SimProcess(speed=1, start="09:31", extra_args=["--rate-limit", "5"]) as sim:
        started = time.time()
        for left in (4, 3, 2, 1, 0):
            status, headers, _ = raw(sim, "GET", "/v2/account")
            assert status == 200 and headers["X-RateLimit-Limit"] == "5"
            assert headers["X-RateLimit-Remaining"] == str(left)
            assert started <= int(headers["X-RateLimit-Reset"]) <= started + 61
        status, headers, body = raw(sim, "GET", "/v2/orders")
        assert (status, body["code"], body["message"]) == (429, 42910000, "rate limit exceeded")
        assert headers["X-RateLimit-Remaining"] == "0"
        client = TradingClient(sim.key, sim.secret, url_override=sim.base_url)
        client._retry = 0  # alpaca-py would otherwise retry a 429 three times, 3 s apart
        with pytest.raises(APIError) as exc:
            client.get_clock()
        assert (exc.value.status_code, exc.value.code) == (429, 42910000)
        status, headers, _ = raw(sim, "GET", "/v2/stocks/bars?symbols=SPY&timeframe=1Min")  # market data: not limited
        assert status == 200 and "X-RateLimit-Limit" not in headers
        assert sim.health()["rate_limit"]["limited"] == 2


def test_the_limit_counts_per_market_minute() -> None:
    """At 60x a market minute lasts one wall second: the budget per market minute is Alpaca's."""
    with SimProcess(speed=60, start="09:31", extra_args=["--rate-limit", "3"]) as sim:
        status, headers, _ = raw(sim, "GET", "/v2/account")
        assert status == 200 and int(headers["X-RateLimit-Reset"]) <= time.time() + 2  # not 60 s away
        time.sleep(1.1)
        status, headers, _ = raw(sim, "GET", "/v2/account")
        assert status == 200 and headers["X-RateLimit-Remaining"] == "2"  # a fresh window


@pytest.fixture(scope="module")
def broker_sim() -> Iterator[SimProcess]:
    """An open market (09:31 ET, 60x) with a small account, XLE not tradable and XLF not fractionable."""
    args = ["--cash", "10000", "--not-tradable", "XLE", "--not-fractionable", "XLF", "--seed-position", "XLF:2.5"]
    with SimProcess(speed=60, start="09:31", extra_args=args) as sim:
        yield sim
        within_rate_limit(sim)


def _refused(call: object, *args: object) -> tuple[int, int, str]:
    with pytest.raises(APIError) as exc:
        call(*args)  # type: ignore[operator]
    return exc.value.status_code, exc.value.code, exc.value.message


def test_every_trading_answer_carries_the_default_limit(broker_sim: SimProcess) -> None:
    for path in ("/v2/account", "/v2/orders/00000000-0000-0000-0000-000000000000"):
        _, headers, _ = raw(broker_sim, "GET", path)
        assert headers["X-RateLimit-Limit"] == "200" and int(headers["X-RateLimit-Remaining"]) < 200


def test_an_asset_that_is_not_tradable_is_refused(broker_sim: SimProcess) -> None:
    tc = broker_sim.config().trading_client()
    assert not tc.get_asset("XLE").tradable and tc.get_asset("SPY").tradable
    assert _refused(tc.submit_order, order("XLE", qty=1)) == (422, 42210000, "asset XLE is not tradable")


def test_fractions_of_an_asset_that_is_not_fractionable_are_refused(broker_sim: SimProcess) -> None:
    tc = broker_sim.config().trading_client()
    assert not tc.get_asset("XLF").fractionable and tc.get_asset("XLE").fractionable
    refusal = (422, 42210000, "requested asset is not fractionable")
    assert _refused(tc.submit_order, order("XLF", notional=100)) == refusal
    assert _refused(tc.submit_order, order("XLF", qty=0.5)) == refusal
    whole = tc.submit_order(order("XLF", qty=1, cid="xlf-whole"))
    assert wait_status(tc, whole.id, OrderStatus.FILLED).status == OrderStatus.FILLED
    assert tc.get_open_position("XLF").qty == "3.5"
    close = tc.submit_order(order("XLF", side="sell", qty=3.5, cid="xlf-close"))  # reducing a held fraction
    assert wait_status(tc, close.id, OrderStatus.FILLED).status == OrderStatus.FILLED


def test_buying_power_is_checked_as_alpaca_does_with_a_buffer_on_shorts(broker_sim: SimProcess) -> None:
    tc = broker_sim.config().trading_client()
    too_little = (403, 40310000, "insufficient buying power")
    assert _refused(tc.submit_order, order("SPY", qty=100)) == too_little
    bp = float(tc.get_account().buying_power)
    dc = broker_sim.config().data_client()
    price = dc.get_stock_latest_bar(StockLatestBarRequest(symbol_or_symbols="SQQQ"))["SQQQ"].close
    qty = math.floor(bp / (price * 1.015))  # fits at the price, not 3% above it
    assert _refused(tc.submit_order, order("SQQQ", side="sell", qty=qty)) == too_little
    buy = tc.submit_order(order("SQQQ", qty=qty, cid="sqqq-fits"))
    assert wait_status(tc, buy.id, OrderStatus.FILLED).status == OrderStatus.FILLED


def test_the_account_has_no_pattern_day_trader_fields(broker_sim: SimProcess) -> None:
    _, _, body = raw(broker_sim, "GET", "/v2/account")
    assert not {"pattern_day_trader", "daytrade_count", "daytrading_buying_power", "bod_dtbp"} & set(body)
    acct = broker_sim.config().trading_client().get_account()
    assert isinstance(acct, TradeAccount) and acct.status == "ACTIVE" and acct.trading_blocked is False
    assert acct.pattern_day_trader is None and acct.daytrade_count is None and acct.daytrading_buying_power is None


def test_a_wash_trade_is_refused_with_alpacas_message() -> None:
    with SimProcess(speed=1, start="08:00", extra_args=["--seed-position", "TNA:5"]) as sim:
        tc = sim.config().trading_client()
        assert tc.submit_order(order("TNA", qty=1, cid="queued-buy")).status == OrderStatus.ACCEPTED
        wash = (403, 40310000, "potential wash trade detected. use complex orders")
        assert _refused(tc.submit_order, order("TNA", side="sell", qty=1)) == wash  # even a sell that reduces
        assert _refused(tc.submit_order, order("TNA", side="sell", qty=10)) == wash


def test_a_blocked_account_may_not_trade() -> None:
    with SimProcess(speed=60, start="09:31", extra_args=["--trading-blocked", "--seed-position", "SPY:3"]) as sim:
        tc = sim.config().trading_client()
        assert tc.get_account().trading_blocked is True
        blocked = (403, 40310000, "account is not authorized to trade")
        assert _refused(tc.submit_order, order("SPY", qty=1)) == blocked
        assert _refused(tc.close_position, "SPY") == blocked
        assert [(r.symbol, r.status) for r in tc.close_all_positions(cancel_orders=True)] == [("SPY", 403)]
        assert tc.get_open_position("SPY").qty == "3"


def test_seeded_positions_may_be_short_fractional_and_outside_the_universe() -> None:
    args = [a for p in ("SQQQ:-7", "XLF:2.5", "ZZZZ:3", "TZA:-1.5") for a in ("--seed-position", p)]
    with SimProcess(speed=60, start="09:31", extra_args=args) as sim:
        tc = sim.config().trading_client()
        held = {p.symbol: (p.qty, p.side) for p in tc.get_all_positions()}
        assert held == {"SQQQ": ("-7", "short"), "XLF": ("2.5", "long"), "ZZZZ": ("3", "long"),
                        "TZA": ("-1.5", "short")}
        assert tc.get_asset("ZZZZ").tradable
        assert _minutes(sim, "ZZZZ", _at("09:30"), _at("09:30"), DataFeed.IEX) == [_at("09:30")]
        assert all(r.status == 200 for r in tc.close_all_positions(cancel_orders=True))
        deadline = time.monotonic() + 5
        while tc.get_all_positions() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert tc.get_all_positions() == []


def test_a_position_held_across_a_split_is_adjusted_at_its_open() -> None:
    args = ["--split", "TZA:0.1:2025-11-20", "--seed-position", "TZA:100"]
    with SimProcess(speed=60, start="09:29", extra_args=args) as sim:
        tc = sim.config().trading_client()
        before = tc.get_open_position("TZA")
        queued = tc.submit_order(order("TZA", qty=5, cid="before-split"))
        assert before.qty == "100" and queued.status == OrderStatus.ACCEPTED
        _wait_market(sim, _at("09:30") + timedelta(seconds=5))
        after = tc.get_open_position("TZA")
        assert after.qty == "10"
        assert float(after.avg_entry_price) == pytest.approx(float(before.avg_entry_price) * 10, rel=1e-6)
        assert float(after.market_value) == pytest.approx(float(before.market_value), rel=0.1)
        assert tc.get_order_by_id(queued.id).status == OrderStatus.CANCELED
        assert sim.health()["market"]["splits_applied"] == ["TZA:0.1:2025-11-20"]
    with SimProcess(speed=60, start="09:31", extra_args=args) as sim:  # seeded after the split: bought post-split
        assert sim.config().trading_client().get_open_position("TZA").qty == "100"
