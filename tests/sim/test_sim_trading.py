"""TradingClient (alpaca-py) against a live simulator: account, orders, positions, clock, calendar."""

from __future__ import annotations

import json
import time
from datetime import date, datetime

import pytest
import requests
from alpaca.common.exceptions import APIError
from alpaca.data.requests import StockBarsRequest
from alpaca.data.timeframe import TimeFrame
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderStatus, QueryOrderStatus
from alpaca.trading.requests import GetCalendarRequest, GetOrdersRequest
from sim_helpers import order, wait_status

from openbell.sim.testing import SimProcess


def api_error(exc: pytest.ExceptionInfo[APIError]) -> tuple[int, int, str]:
    return exc.value.status_code, exc.value.code, exc.value.message


def test_account_assets_and_seeded_position(open_sim: SimProcess) -> None:
    tc = open_sim.config().trading_client()
    acct = tc.get_account()
    assert acct.status == "ACTIVE"
    assert float(acct.cash) == 100_000
    assets = {a.symbol for a in tc.get_all_assets()}
    assert {"TQQQ", "SQQQ", "UVXY", "SVXY", "SPY", "AAPL", "MSFT"} <= assets
    assert tc.get_asset("FAZ").tradable
    pos = tc.get_open_position("AAPL")
    assert pos.qty == "100" and pos.side == "long"
    assert float(acct.equity) == pytest.approx(100_000 + float(pos.market_value), abs=1)


def test_market_orders_fill_with_slippage_and_trace(open_sim: SimProcess) -> None:
    tc = open_sim.config().trading_client()
    buy = tc.submit_order(order("TQQQ", qty=10, cid="t-buy-1"))
    assert buy.client_order_id == "t-buy-1" and buy.status in (OrderStatus.NEW, OrderStatus.FILLED)
    filled = wait_status(tc, buy.id, OrderStatus.FILLED)
    assert filled.status == OrderStatus.FILLED and float(filled.filled_qty) == 10
    assert float(filled.filled_avg_price) > 0
    assert tc.get_order_by_client_id("t-buy-1").id == buy.id
    pos = tc.get_open_position("TQQQ")
    assert float(pos.qty) == 10
    # notional buy gives a fractional position
    note = tc.submit_order(order("MSFT", notional=1000, cid="t-notional"))
    done = wait_status(tc, note.id, OrderStatus.FILLED)
    assert float(done.filled_qty) * float(done.filled_avg_price) == pytest.approx(1000, rel=1e-3)
    # a short from flat, then the list filters
    short = tc.submit_order(order("SQQQ", side="sell", qty=5, cid="t-short"))
    wait_status(tc, short.id, OrderStatus.FILLED)
    assert tc.get_open_position("SQQQ").side == "short"
    closed = tc.get_orders(GetOrdersRequest(status=QueryOrderStatus.CLOSED, nested=True, symbols=["TQQQ", "SQQQ"]))
    assert {o.client_order_id for o in closed} == {"t-buy-1", "t-short"}


def test_fills_are_the_minute_open_plus_slippage(open_sim: SimProcess) -> None:
    tc = open_sim.config().trading_client()
    dc = open_sim.config().data_client()
    fills = []
    for side, cid in (("buy", "slip-b"), ("sell", "slip-s")):  # the sell waits: no wash trades
        o = tc.submit_order(order("SPY", side=side, qty=1, cid=cid))
        fills.append(wait_status(tc, o.id, OrderStatus.FILLED))
    time.sleep(1.5)  # 1.5 market minutes at 60x: the fill minutes' bars are complete
    for o, sign in zip(fills, (1, -1), strict=True):
        minute = o.filled_at.replace(second=0, microsecond=0)
        bars = dc.get_stock_bars(StockBarsRequest(symbol_or_symbols="SPY", timeframe=TimeFrame.Minute,
                                                  start=minute, end=minute)).data["SPY"]
        assert len(bars) == 1
        assert float(o.filled_avg_price) == pytest.approx(bars[0].open * (1 + sign * 0.0005), abs=1e-4)


def test_duplicate_client_order_id_refused_without_change(open_sim: SimProcess) -> None:
    tc = open_sim.config().trading_client()
    first = tc.submit_order(order("XLF", qty=3, cid="dup-1"))
    wait_status(tc, first.id, OrderStatus.FILLED)
    before = tc.get_open_position("XLF").qty
    with pytest.raises(APIError) as exc:
        tc.submit_order(order("XLF", qty=3, cid="dup-1"))
    assert api_error(exc) == (422, 42210000, "client_order_id must be unique")
    time.sleep(0.1)
    assert tc.get_open_position("XLF").qty == before


def test_bad_orders_get_alpaca_errors(open_sim: SimProcess) -> None:
    tc = open_sim.config().trading_client()
    n_orders = len(tc.get_orders(GetOrdersRequest(status=QueryOrderStatus.ALL, limit=500)))
    with pytest.raises(APIError) as exc:
        tc.submit_order(order("NOPE", qty=1))
    assert exc.value.status_code == 422 and "NOPE" in exc.value.message
    with pytest.raises(APIError) as exc:
        tc.submit_order(order("SPY", qty=1_000_000, cid="too-big"))
    assert api_error(exc)[:2] == (403, 40310000) and "buying power" in exc.value.message
    with pytest.raises(APIError) as exc:
        tc.get_order_by_id("00000000-0000-0000-0000-000000000000")
    assert api_error(exc)[:2] == (404, 40410000)
    with pytest.raises(APIError) as exc:
        tc.close_position("IWM")
    assert exc.value.status_code == 404
    s = requests.Session()
    s.headers.update({"APCA-API-KEY-ID": open_sim.key, "APCA-API-SECRET-KEY": open_sim.secret})
    url = open_sim.base_url + "/v2/orders"
    cases = [
        ("{not json", 400),
        (json.dumps({"symbol": "SPY", "qty": 0, "side": "buy", "type": "market", "time_in_force": "day"}), 422),
        (json.dumps({"symbol": "SPY", "qty": -2, "side": "buy", "type": "market", "time_in_force": "day"}), 422),
        (json.dumps({"symbol": "SPY", "qty": "x", "side": "buy", "type": "market", "time_in_force": "day"}), 422),
        (json.dumps({"symbol": "SPY", "qty": 1, "side": "up", "type": "market", "time_in_force": "day"}), 422),
        (json.dumps({"symbol": "SPY", "qty": 1, "side": "buy", "type": "limit", "time_in_force": "day"}), 422),
        (json.dumps({"symbol": "SPY", "qty": 1, "notional": 5, "side": "buy", "type": "market",
                     "time_in_force": "day"}), 422),
        (json.dumps([1, 2]), 400),
    ]
    for body, status in cases:
        r = s.post(url, data=body)
        assert r.status_code == status, (body, r.text)
        assert set(r.json()) >= {"code", "message"}
    assert s.get(open_sim.base_url + "/v2/orders?status=bogus").status_code == 422
    assert s.get(open_sim.base_url + "/v2/nothing-here").json()["code"] == 40410000
    assert len(tc.get_orders(GetOrdersRequest(status=QueryOrderStatus.ALL, limit=500))) == n_orders


def test_selling_more_than_held_is_refused(open_sim: SimProcess) -> None:
    tc = open_sim.config().trading_client()
    with pytest.raises(APIError) as exc:
        tc.submit_order(order("AAPL", side="sell", qty=101))
    assert api_error(exc)[:2] == (403, 40310000) and "insufficient qty" in exc.value.message


def test_auth_is_checked(open_sim: SimProcess) -> None:
    bad = TradingClient("test-key", "wrong", url_override=open_sim.base_url)
    bad._retry = 0
    with pytest.raises(APIError) as exc:
        bad.get_account()
    assert exc.value.status_code == 401 and exc.value.code == 40110000
    assert requests.get(open_sim.base_url + "/v2/account").status_code == 401


def test_clock_is_market_time(open_sim: SimProcess) -> None:
    tc = open_sim.config().trading_client()
    c = tc.get_clock()
    sim = open_sim.clock()
    assert c.is_open
    assert c.next_close == datetime.fromisoformat("2025-11-20T16:00:00-05:00")
    assert c.next_open == datetime.fromisoformat("2025-11-21T09:30:00-05:00")
    assert abs((c.timestamp - datetime.fromisoformat(sim["market_time"])).total_seconds()) < 120
    assert sim["speed"] == 60 and sim["session_date"] == "2025-11-20"


def test_calendar_holiday_week_and_early_close(open_sim: SimProcess) -> None:
    tc = open_sim.config().trading_client()
    days = tc.get_calendar(GetCalendarRequest(start=date(2025, 11, 24), end=date(2025, 11, 30)))
    assert [d.date for d in days] == [date(2025, 11, d) for d in (24, 25, 26, 28)]  # Thanksgiving closed
    assert days[-1].close == datetime(2025, 11, 28, 13, 0) and days[0].close == datetime(2025, 11, 24, 16, 0)
    july = tc.get_calendar(GetCalendarRequest(start=date(2025, 7, 3), end=date(2025, 7, 4)))
    assert [(d.date, d.close.hour) for d in july] == [(date(2025, 7, 3), 13)]
    r = requests.get(open_sim.base_url + "/v2/calendar?start=2025-12-01&end=2025-11-01",
                     headers={"APCA-API-KEY-ID": open_sim.key, "APCA-API-SECRET-KEY": open_sim.secret})
    assert r.status_code == 422 and "code" in r.json()


def test_closed_market_queues_cancel_and_close_all(closed_sim: SimProcess) -> None:
    tc = closed_sim.config().trading_client()
    assert not tc.get_clock().is_open
    a = tc.submit_order(order("SPY", qty=1, cid="q-1"))
    b = tc.submit_order(order("QQQ", qty=1, cid="q-2"))
    assert a.status == OrderStatus.ACCEPTED
    open_now = tc.get_orders(GetOrdersRequest(status=QueryOrderStatus.OPEN, symbols=["SPY", "QQQ"]))
    assert {o.client_order_id for o in open_now} == {"q-1", "q-2"}
    tc.cancel_order_by_id(a.id)
    assert tc.get_order_by_id(a.id).status == OrderStatus.CANCELED
    with pytest.raises(APIError) as exc:
        tc.cancel_order_by_id(a.id)
    assert exc.value.status_code == 422
    results = tc.cancel_orders()
    assert [(str(r.id), r.status) for r in results] == [(str(b.id), 200)]
    assert tc.get_orders() == []
    assert tc.close_all_positions(cancel_orders=True) == []


def test_close_all_positions_and_restart_keeps_state(tmp_path: object) -> None:
    with SimProcess(speed=60, start="09:40", data_dir=str(tmp_path),
                    extra_args=["--seed-position", "SQQQ:-50", "--seed-position", "TNA:20"]) as sim:
        tc = sim.config().trading_client()
        o = tc.submit_order(order("FAS", qty=4, cid="keep-1"))
        wait_status(tc, o.id, OrderStatus.FILLED)
        before = {p.symbol: p.qty for p in tc.get_all_positions()}
        assert before == {"SQQQ": "-50", "TNA": "20", "FAS": "4"}
        cash = tc.get_account().cash
        sim.restart()
        assert {p.symbol: p.qty for p in tc.get_all_positions()} == before
        assert tc.get_order_by_client_id("keep-1").status == OrderStatus.FILLED
        assert tc.get_account().cash == cash
        with pytest.raises(APIError):
            tc.submit_order(order("FAS", qty=1, cid="keep-1"))
        results = tc.close_all_positions(cancel_orders=True)
        assert sorted(r.symbol for r in results) == ["FAS", "SQQQ", "TNA"]
        assert all(r.status == 200 for r in results)
        deadline = time.monotonic() + 5
        while tc.get_all_positions() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert tc.get_all_positions() == []


def test_orders_queued_before_the_open_stay_working_across_a_restart(tmp_path: object) -> None:
    with SimProcess(date="2025-11-20", speed=1, start="08:00", data_dir=str(tmp_path)) as sim:
        tc = sim.config().trading_client()
        queued = tc.submit_order(order("SPY", qty=2, cid="early-1"))
        sim.restart()
        assert [o.client_order_id for o in tc.get_orders()] == ["early-1"]
        with pytest.raises(APIError) as exc:  # the queued buy still counts as working
            tc.submit_order(order("SPY", side="sell", qty=1, cid="early-2"))
        assert exc.value.status_code == 403 and "wash trade" in str(exc.value)
        tc.cancel_order_by_id(queued.id)
        assert tc.get_orders() == []
        assert tc.submit_order(order("SPY", side="sell", qty=1, cid="early-3")).status == OrderStatus.ACCEPTED
