"""StockHistoricalDataClient (alpaca-py) against a live simulator: bars, paging, bad input."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import requests
from alpaca.common.exceptions import APIError
from alpaca.data.enums import Adjustment, DataFeed
from alpaca.data.requests import StockBarsRequest, StockLatestBarRequest
from alpaca.data.timeframe import TimeFrame, TimeFrameUnit

from openbell.sim.market import LEVERAGED, bars_between
from openbell.sim.testing import SimProcess

ET = "America/New_York"


def test_download_over_10000_bars_across_pages_matches_the_library(open_sim: SimProcess) -> None:
    dc = open_sim.config().data_client()
    calls: list[str] = []
    orig = dc._session.request

    def counting(method, url, *a, **kw):  # type: ignore[no-untyped-def]
        calls.append(kw.get("params", {}).get("page_token") or "")
        return orig(method, url, *a, **kw)

    dc._session.request = counting  # type: ignore[method-assign]
    start = datetime(2025, 11, 17, tzinfo=UTC)
    end = datetime(2025, 11, 20, tzinfo=UTC)  # three sessions before the simulated day
    req = StockBarsRequest(symbol_or_symbols=list(LEVERAGED), timeframe=TimeFrame.Minute, start=start, end=end,
                           feed=DataFeed.IEX, adjustment=Adjustment.ALL)
    got = dc.get_stock_bars(req).df
    assert len(got) == 12 * 3 * 390 > 10_000
    assert len(calls) == 2 and calls[0] == "" and calls[1]
    want = bars_between(list(LEVERAGED), "2025-11-17", "2025-11-19")
    got = got.reset_index()
    assert list(got["symbol"]) == list(want["symbol"])
    assert (got["timestamp"].to_numpy() == want["timestamp"].to_numpy()).all()
    for col in ("open", "high", "low", "close", "volume", "trade_count", "vwap"):
        assert (got[col].to_numpy() == want[col].to_numpy()).all(), col


def test_small_limit_pages_and_sort(open_sim: SimProcess) -> None:
    dc = open_sim.config().data_client(raw_data=True)
    start = datetime(2025, 11, 19, 14, 30, tzinfo=UTC)
    end = start + timedelta(minutes=9)
    full = dc.get_stock_bars(StockBarsRequest(symbol_or_symbols=["SPY", "QQQ"], timeframe=TimeFrame.Minute,
                                              start=start, end=end))
    assert {k: len(v) for k, v in full.items()} == {"SPY": 10, "QQQ": 10}
    limited = dc.get_stock_bars(StockBarsRequest(symbol_or_symbols=["SPY", "QQQ"], timeframe=TimeFrame.Minute,
                                                 start=start, end=end, limit=15))
    assert {k: len(v) for k, v in limited.items()} == {"QQQ": 10, "SPY": 5}
    # hand-paging with 3 bars per page reassembles the same bars, in descending order too
    s = requests.Session()
    s.headers.update({"APCA-API-KEY-ID": open_sim.key, "APCA-API-SECRET-KEY": open_sim.secret})
    for sort in ("asc", "desc"):
        params: dict[str, str] = {"symbols": "SPY,QQQ", "timeframe": "1Min", "start": start.isoformat(),
                                  "end": end.isoformat(), "limit": "3", "sort": sort}
        seen: dict[str, list[str]] = {}
        for _ in range(20):
            body = s.get(open_sim.base_url + "/v2/stocks/bars", params=params).json()
            assert sum(len(v) for v in body["bars"].values()) <= 3
            for sym, bars in body["bars"].items():
                seen.setdefault(sym, []).extend(b["t"] for b in bars)
            if not body["next_page_token"]:
                break
            params["page_token"] = body["next_page_token"]
        want = [b["t"] for b in full["SPY"]]
        assert seen["SPY"] == (want if sort == "asc" else want[::-1])
        assert len(seen["QQQ"]) == 10


def test_daily_and_hourly_bars_aggregate_minutes(open_sim: SimProcess) -> None:
    dc = open_sim.config().data_client()
    start = datetime(2025, 11, 10, tzinfo=UTC)
    end = datetime(2025, 11, 19, 23, tzinfo=UTC)
    daily = dc.get_stock_bars(StockBarsRequest(symbol_or_symbols="TQQQ", timeframe=TimeFrame.Day,
                                               start=start, end=end)).df.reset_index()
    minutes = bars_between(["TQQQ"], "2025-11-10", "2025-11-19")
    minutes["day"] = minutes["timestamp"].dt.tz_convert(ET).dt.date
    agg = minutes.groupby("day").agg(o=("open", "first"), h=("high", "max"), l=("low", "min"), c=("close", "last"),
                                     v=("volume", "sum"))
    assert len(daily) == len(agg) == 8
    assert list(daily["timestamp"].dt.tz_convert(ET).dt.date) == list(agg.index)
    assert (daily["timestamp"].dt.tz_convert(ET).dt.hour == 0).all()
    assert list(daily["open"]) == list(agg["o"]) and list(daily["close"]) == list(agg["c"])
    assert list(daily["high"]) == list(agg["h"]) and list(daily["volume"]) == list(agg["v"])
    hourly = dc.get_stock_bars(StockBarsRequest(symbol_or_symbols="SPY", timeframe=TimeFrame(1, TimeFrameUnit.Hour),
                                                start=datetime(2025, 11, 19, tzinfo=UTC),
                                                end=datetime(2025, 11, 20, tzinfo=UTC))).df
    assert len(hourly) == 7  # 09:00 (half hour) .. 15:00 ET
    assert hourly["volume"].sum() == bars_between(["SPY"], "2025-11-19", "2025-11-19")["volume"].sum()


def test_today_only_up_to_simulated_now(open_sim: SimProcess) -> None:
    dc = open_sim.config().data_client(raw_data=True)
    now = datetime.fromisoformat(open_sim.clock()["market_time"])
    bars = dc.get_stock_bars(StockBarsRequest(symbol_or_symbols="SPY", timeframe=TimeFrame.Minute,
                                              start=datetime(2025, 11, 20, tzinfo=UTC),
                                              end=datetime(2025, 11, 21, tzinfo=UTC)))["SPY"]
    last = datetime.fromisoformat(bars[-1]["t"])
    assert last + timedelta(minutes=1) <= now + timedelta(minutes=1)
    assert last >= now - timedelta(minutes=3)
    assert bars[0]["t"] == "2025-11-20T14:30:00Z"
    future = dc.get_stock_bars(StockBarsRequest(symbol_or_symbols="SPY", timeframe=TimeFrame.Minute,
                                                start=datetime(2025, 11, 21, tzinfo=UTC),
                                                end=datetime(2025, 11, 22, tzinfo=UTC)))
    assert future == {}
    latest = open_sim.config().data_client().get_stock_latest_bar(StockLatestBarRequest(symbol_or_symbols="SPY"))
    assert latest["SPY"].timestamp <= now


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"symbols": "SPY", "timeframe": "7Fortnight"}, "timeframe"),
        ({"symbols": "SPY", "timeframe": "60Min"}, "timeframe"),
        ({"symbols": "SPY", "timeframe": "1Min", "start": "2025-11-19T00:00:00Z", "end": "2025-11-18T00:00:00Z"},
         "before start"),
        ({"symbols": "SPY", "timeframe": "1Min", "start": "yesterday"}, "start"),
        ({"symbols": "SPY,NOPE", "timeframe": "1Min"}, "NOPE"),
        ({"symbols": "", "timeframe": "1Min"}, "symbols"),
        ({"symbols": "SPY", "timeframe": "1Min", "page_token": "bm90LWEtdG9rZW4"}, "page token"),
        ({"symbols": "SPY", "timeframe": "1Min", "limit": "0"}, "limit"),
        ({"symbols": "SPY", "timeframe": "1Min", "feed": "nasdaq"}, "feed"),
    ],
)
def test_bad_bar_requests(open_sim: SimProcess, params: dict[str, str], fragment: str) -> None:
    r = requests.get(open_sim.base_url + "/v2/stocks/bars", params=params,
                     headers={"APCA-API-KEY-ID": open_sim.key, "APCA-API-SECRET-KEY": open_sim.secret})
    assert r.status_code == 400
    body = r.json()
    assert body["code"] == 40010000 and fragment in body["message"]


def test_sdk_raises_api_error_for_unknown_symbol(open_sim: SimProcess) -> None:
    dc = open_sim.config().data_client()
    with pytest.raises(APIError) as exc:
        dc.get_stock_bars(StockBarsRequest(symbol_or_symbols=["SPY", "ZZZZZ"], timeframe=TimeFrame.Minute,
                                           start=datetime(2025, 11, 19, tzinfo=UTC)))
    assert exc.value.status_code == 400 and "ZZZZZ" in exc.value.message


def test_csv_symbols_are_served(tmp_path: object) -> None:
    from pathlib import Path

    d = Path(str(tmp_path)) / "csv"
    d.mkdir()
    rows = ["timestamp,open,high,low,close,volume,trade_count,vwap"]
    t0 = datetime(2025, 11, 19, 14, 30, tzinfo=UTC)
    for i in range(30):
        p = 20 + i * 0.1
        rows.append(f"{(t0 + timedelta(minutes=i)).isoformat()},{p},{p + 0.2},{p - 0.1},{p + 0.1},{1000 + i},7,{p}")
    (d / "MYCO.csv").write_text("\n".join(rows) + "\n")
    with SimProcess(speed=60, start="09:31", extra_args=["--csv-dir", str(d)]) as sim:
        dc = sim.config().data_client(raw_data=True)
        bars = dc.get_stock_bars(StockBarsRequest(symbol_or_symbols="MYCO", timeframe=TimeFrame.Minute,
                                                  start=t0, end=t0 + timedelta(hours=1)))["MYCO"]
        assert len(bars) == 30 and bars[0]["o"] == 20 and bars[-1]["v"] == 1029 and bars[0]["n"] == 7
        assert sim.config().trading_client().get_asset("MYCO").symbol == "MYCO"
