"""The market as Alpaca serves it, through alpaca-py: sparse IEX bars (--sparse, --dense), corrected bars
(--corrections) and splits (--split)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pytest
from alpaca.data.enums import Adjustment, DataFeed
from alpaca.data.requests import StockBarsRequest
from alpaca.data.timeframe import TimeFrame
from sim_helpers import market_clock, run_until, within_rate_limit

from openbell.sim.cli import parser
from openbell.sim.corrections import correct
from openbell.sim.feed import BarStore, Rules
from openbell.sim.history import bars_json
from openbell.sim.liquidity import no_trade_minutes
from openbell.sim.market import LEVERAGED, session_bars, synthetic_session
from openbell.sim.testing import SimProcess
from openbell.sim.timeframes import parse_timeframe

SEED = 3
DAY = date(2025, 11, 19)


@pytest.fixture(scope="module")
def sparse_sim() -> Iterator[SimProcess]:
    """An IEX-like market with corrections, from midday (12:00 ET) at 300x."""
    with SimProcess(speed=300, start="12:00",
                    extra_args=["--sparse", "--corrections", "0.5", "--seed", str(SEED)]) as sim:
        yield sim
        within_rate_limit(sim)


def _minute_bars(sim: SimProcess, symbols: list[str], start: datetime, end: datetime,
                 feed: DataFeed = DataFeed.IEX, adjustment: Adjustment = Adjustment.RAW) -> dict[str, list[dict]]:
    dc = sim.config().data_client(raw_data=True)
    return dc.get_stock_bars(StockBarsRequest(symbol_or_symbols=symbols, timeframe=TimeFrame.Minute, start=start,
                                              end=end, feed=feed, adjustment=adjustment))


def test_sparse_iex_history_has_no_bar_for_minutes_without_trades(sparse_sim: SimProcess) -> None:
    symbols = [*LEVERAGED, "SPY"]
    start, end = datetime(2025, 11, 19, tzinfo=UTC), datetime(2025, 11, 20, tzinfo=UTC)
    iex = _minute_bars(sparse_sim, symbols, start, end)
    sip = _minute_bars(sparse_sim, symbols, start, end, DataFeed.SIP)
    missing = {}
    for sym in symbols:
        dense = session_bars([sym], DAY, seed=SEED)["timestamp"]
        assert [b["t"] for b in sip[sym]] == [t.strftime("%Y-%m-%dT%H:%M:%SZ") for t in dense]  # SIP stays dense
        empty = no_trade_minutes(sym, DAY, SEED, 390)  # deterministic per seed
        assert [b["t"] for b in iex[sym]] == [t.strftime("%Y-%m-%dT%H:%M:%SZ") for t in dense[~empty]], sym
        missing[sym] = 1 - len(iex[sym]) / 390
    assert missing["SPY"] == 0
    assert 0.25 <= missing["ERY"] <= 0.55 and 0.15 <= missing["FAZ"] <= 0.45
    assert min(missing[s] for s in ("ERY", "FAZ", "SDS")) > max(missing[s] for s in ("TQQQ", "UVXY"))
    assert all(missing[s] <= 0.55 for s in symbols)


def test_sparse_minutes_depend_on_the_seed_only() -> None:
    a = no_trade_minutes("ERY", DAY, SEED, 390)
    assert (a == no_trade_minutes("ERY", DAY, SEED, 390)).all()
    assert (a != no_trade_minutes("ERY", DAY, SEED + 1, 390)).any()
    assert not no_trade_minutes("SPY", DAY, SEED, 390).any()


def test_sparse_stream_sends_no_bar_for_a_minute_without_trades(sparse_sim: SimProcess) -> None:
    symbols = ["ERY", "FAZ", "SDS", "SPY"]
    got: list[object] = []

    async def on_bar(bar: object) -> None:
        got.append(bar)

    def spy() -> list[datetime]:
        return sorted(b.timestamp for b in got if b.symbol == "SPY")  # type: ignore[attr-defined]

    stream = sparse_sim.config().data_stream()
    stream.subscribe_bars(on_bar, *symbols)
    assert asyncio.run(run_until(stream, lambda: len(spy()) >= 8))
    first, last = spy()[0], spy()[-1]
    assert [b - a for a, b in zip(spy(), spy()[1:], strict=False)] == [timedelta(minutes=1)] * (len(spy()) - 1)
    rest = _minute_bars(sparse_sim, symbols, first, last)
    today = session_bars(symbols, "2025-11-20", seed=SEED)
    for sym in symbols:
        live = sorted(b.timestamp for b in got if b.symbol == sym)  # type: ignore[attr-defined]
        assert live == [datetime.fromisoformat(b["t"]) for b in rest.get(sym, [])], sym  # REST: the same minutes
        dense = today[today.symbol == sym]["timestamp"]
        empty = no_trade_minutes(sym, date(2025, 11, 20), SEED, 390)
        assert live == [t for t in dense[~empty] if first <= t <= last], sym


def test_sparse_is_the_default_and_dense_has_its_own_flag() -> None:
    assert parser().parse_args([]).sparse is True
    assert 0 < parser().parse_args([]).corrections < 0.05  # a small share, as Alpaca corrects
    assert parser().parse_args(["--dense"]).sparse is False and parser().parse_args(["--sparse"]).sparse is True
    with SimProcess(speed=60, start="09:31", extra_args=["--dense", "--seed", str(SEED)]) as sim:
        bars = _minute_bars(sim, ["ERY", "FAZ"], datetime(2025, 11, 19, tzinfo=UTC), datetime(2025, 11, 20, tzinfo=UTC))
        assert {k: len(v) for k, v in bars.items()} == {"ERY": 390, "FAZ": 390}


def test_corrections_are_resent_on_updated_bars_30_seconds_later_and_rest_serves_them(sparse_sim: SimProcess) -> None:
    symbols = ["SPY", "QQQ", "IWM"]  # never without a trade on IEX
    bars: dict[tuple[str, datetime], object] = {}
    updates: list[tuple[object, datetime]] = []
    now = market_clock(sparse_sim)

    async def on_bar(bar: object) -> None:
        bars[(bar.symbol, bar.timestamp)] = bar  # type: ignore[attr-defined]

    async def on_update(bar: object) -> None:
        updates.append((bar, now()))

    def seen() -> list[tuple[object, datetime]]:  # corrections of bars this stream saw
        return [(u, at) for u, at in updates if (u.symbol, u.timestamp) in bars]  # type: ignore[attr-defined]

    stream = sparse_sim.config().data_stream()
    stream.subscribe_bars(on_bar, *symbols)
    stream.subscribe_updated_bars(on_update, *symbols)
    assert asyncio.run(run_until(stream, lambda: len(seen()) >= 5, timeout=20))
    for u, received in seen():
        b = bars[(u.symbol, u.timestamp)]  # type: ignore[attr-defined]
        assert u.volume > b.volume and u.trade_count > b.trade_count  # type: ignore[attr-defined]
        assert u.high >= b.high and u.low <= b.low and u.open == b.open  # type: ignore[attr-defined]
        lag = (received - u.timestamp).total_seconds()  # type: ignore[attr-defined]
        assert 85 <= lag <= 110, lag  # the minute (60 s), then about 30 market seconds
    u = seen()[0][0]
    rest = _minute_bars(sparse_sim, [u.symbol], u.timestamp, u.timestamp)[u.symbol]  # type: ignore[attr-defined]
    assert [(r["o"], r["h"], r["l"], r["c"], r["v"], r["n"], r["vw"]) for r in rest] == \
        [(u.open, u.high, u.low, u.close, u.volume, u.trade_count, u.vwap)]  # type: ignore[attr-defined]


def test_corrections_are_a_share_of_bars_chosen_by_the_seed() -> None:
    masks = {share: np.concatenate([correct(s, DAY, SEED, share, synthetic_session(s, DAY, SEED))[0]
                                    for s in LEVERAGED]) for share in (0.05, 0.5)}
    assert 0.03 <= masks[0.05].mean() <= 0.07 and 0.46 <= masks[0.5].mean() <= 0.54
    assert (masks[0.5] >= masks[0.05]).all()  # a larger share corrects a superset
    assert not correct("SPY", DAY, SEED, 0.0, synthetic_session("SPY", DAY, SEED))[0].any()


def test_rest_serves_a_bar_uncorrected_until_its_correction_is_out() -> None:
    store = BarStore(SEED, rules=Rules(corrections=1.0))
    view = store.view("SPY", DAY)
    t = int(view.final.t[100])
    bar_end = t + 60_000_000_000
    minute = parse_timeframe("1Min")
    before = bars_json(store, ["SPY"], minute, t, t, 10, False, None, bar_end + 29_000_000_000)
    after = bars_json(store, ["SPY"], minute, t, t, 10, False, None, bar_end + 30_000_000_000)
    assert before != after
    assert b'"v":%d' % int(view.orig.v[100]) in before and b'"v":%d' % int(view.final.v[100]) in after


@pytest.fixture(scope="module")
def split_sim() -> Iterator[SimProcess]:
    """ERY reverse-split 1-for-10 on 2025-11-18; FAZ splits 2-for-1 on 2025-11-21, after the played day."""
    with SimProcess(speed=60, start="09:40",
                    extra_args=["--split", "ERY:0.1:2025-11-18", "--split", "FAZ:2:2025-11-21"]) as sim:
        yield sim
        within_rate_limit(sim)


def _daily(sim: SimProcess, symbol: str, adjustment: Adjustment) -> list[dict]:
    dc = sim.config().data_client(raw_data=True)
    return dc.get_stock_bars(StockBarsRequest(symbol_or_symbols=symbol, timeframe=TimeFrame.Day,
                                              start=datetime(2025, 11, 12, tzinfo=UTC),
                                              end=datetime(2025, 11, 20, tzinfo=UTC), adjustment=adjustment))[symbol]


def test_raw_history_shows_the_split_and_split_adjusted_history_does_not(split_sim: SimProcess) -> None:
    raw = _daily(split_sim, "ERY", Adjustment.RAW)
    adjusted = _daily(split_sim, "ERY", Adjustment.SPLIT)
    days = [b["t"][:10] for b in raw]
    i = days.index("2025-11-18")
    assert raw[i]["o"] / raw[i - 1]["c"] == pytest.approx(10, rel=0.1)  # the jump of a 1-for-10 reverse split
    assert adjusted[i]["o"] / adjusted[i - 1]["c"] == pytest.approx(1, abs=0.1)
    for r, a in zip(raw[:i], adjusted[:i], strict=True):  # before the split: prices / 0.1, volume * 0.1
        assert a["c"] == pytest.approx(r["c"] * 10, abs=1e-3) and a["v"] == pytest.approx(r["v"] * 0.1, abs=1)
    assert raw[i:] == adjusted[i:]
    assert _daily(split_sim, "ERY", Adjustment.ALL) == adjusted
    assert _daily(split_sim, "ERY", Adjustment.DIVIDEND) == raw  # no dividends are modeled
    minutes = _minute_bars(split_sim, ["ERY"], datetime(2025, 11, 17, 20, 55, tzinfo=UTC),
                           datetime(2025, 11, 18, 14, 35, tzinfo=UTC), DataFeed.SIP, Adjustment.SPLIT)["ERY"]
    closes = [b["c"] for b in minutes]
    assert max(closes) / min(closes) < 1.1  # across the split, minute by minute


def test_a_split_not_yet_made_is_not_adjusted_and_today_trades_at_the_raw_level(split_sim: SimProcess) -> None:
    assert _daily(split_sim, "FAZ", Adjustment.SPLIT) == _daily(split_sim, "FAZ", Adjustment.RAW)
    today = _minute_bars(split_sim, ["FAZ", "ERY"], datetime(2025, 11, 20, 14, 30, tzinfo=UTC),
                         datetime(2025, 11, 20, 14, 35, tzinfo=UTC), DataFeed.SIP)
    want = session_bars(["FAZ", "ERY"], "2025-11-20")
    for sym, factor in (("FAZ", 2.0), ("ERY", 1.0)):  # before FAZ's 2-for-1 its price is twice the later level
        opens = want[want.symbol == sym]["open"].iloc[:6].to_numpy()
        assert [b["o"] for b in today[sym]] == pytest.approx(list(opens * factor), abs=0.006)
