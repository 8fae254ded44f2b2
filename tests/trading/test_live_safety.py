"""The live loop's money safety, driven through the entry points its streams and housekeeping call.

A real simulator (its market paused-like at 1x) and a real Postgres; the session is prepared as
``TradingAttempt.run`` prepares it, then each test hands in what a stream would deliver.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from alpaca.common.exceptions import APIError
from alpaca.data.models import Bar as AlpacaBar
from alpaca.trading.enums import OrderSide, QueryOrderStatus, TimeInForce
from alpaca.trading.requests import GetOrdersRequest, MarketOrderRequest
from sqlalchemy import Engine, text

from dates import SESSION
from live_parts import flushed as settled
from live_parts import prepared, rows, run, until
from openbell.adapters.alpaca.streams import bar_handler, trade_handler
from openbell.broker import client_order_id
from openbell.calendar import session
from openbell.clock import clock_for
from openbell.ports import SubmitResult
from openbell.sim.testing import SimProcess
from openbell.store.sessions import set_phase
from openbell.strategy import RiskLimits
from openbell.trading import TradingAttempt
from openbell.trading.live import UNSENT_GRACE
from openbell.trading.portfolio import OrderIntent


async def streamed(live: TradingAttempt, bar: AlpacaBar) -> None:
    """``bar`` as the bar stream's subscription hands it in."""
    await bar_handler(live.streams.on_bar)(bar)


def _status(client: Any, coid: str) -> str | None:
    try:
        return str(client.get_order_by_client_id(coid).status.value)
    except APIError:
        return None


def _bar(symbol: str, ts: Any, o: float, h: float, lo: float, c: float) -> AlpacaBar:
    return AlpacaBar(symbol, {"t": ts, "o": o, "h": h, "l": lo, "c": c, "v": 1000, "n": 10, "vw": c})


def test_an_order_the_broker_never_saw_is_sent_again_under_its_own_id(engine: Engine, tmp_path: Path) -> None:
    """Unknown outcome, then 404 past the grace: the order stops counting as working (the other side and
    the broker sync resume), the next decision that still wants it sends it once under the same id."""

    async def scenario() -> None:
        with SimProcess(date="2025-11-20", speed=1, start="11:00", data_dir=tmp_path / "sim") as sim:
            async with prepared(sim, engine) as live:
                seq = live.seq
                live.seq += 1
                coid = client_order_id(SESSION, seq, "SSO")
                intent = OrderIntent("SSO", "buy", 5.0, 0.05)
                live.portfolio.add_working(coid, intent, seq)  # what a decision does before the order leaves
                live.dispatch.on_submitted(seq, intent, SubmitResult(coid, "unknown", reason="order worker exited"))
                await settled(live)
                assert rows(engine, "SELECT status FROM orders WHERE client_order_id = :c", c=coid) == [("unknown",)]

                await asyncio.to_thread(live.sync.poll_orders, [coid])  # housekeeping's lookups: 404
                await asyncio.sleep(UNSENT_GRACE + 0.1)
                await asyncio.to_thread(live.sync.poll_orders, [coid])
                await until(lambda: coid not in live.portfolio.working, "the order stops counting as working")
                assert not live.portfolio.working_against("SSO", "sell")
                live.sync.apply_sync(123.0, {})  # the broker sync is applied again
                assert live.portfolio.cash == 123.0

                # the next decision still wants SSO: the same id goes out, once
                await asyncio.to_thread(live.sync.sync_account)
                await until(lambda: live.portfolio.cash != 123.0, "the account synced")
                notes: list[str] = []
                placed = live.dispatch.place(live.seq, {"SSO": 0.05, "TQQQ": 0.0}, notes, None, trade=True)
                live.seq += 1
                assert [c for c, _ in placed] == [coid], notes
                client = sim.config().trading_client()
                await until(lambda: _status(client, coid) == "filled", "the resent order filled")
                await asyncio.to_thread(live.sync.poll_orders, [coid])
                await until(lambda: coid not in live.portfolio.working, "the resent order is final")
                broker = client.get_orders(GetOrdersRequest(status=QueryOrderStatus.ALL, limit=500))
                await settled(live)
        assert [o.client_order_id for o in broker] == [coid]
        status = rows(engine, "SELECT status, qty FROM orders WHERE client_order_id = :c", c=coid)
        assert status and status[0][0] == "filled"
        assert live.report.orders_resent == 1

    run(scenario)


def test_an_order_the_broker_never_saw_and_no_longer_wanted_is_final_as_not_sent(
    engine: Engine, tmp_path: Path
) -> None:
    async def scenario() -> None:
        with SimProcess(date="2025-11-20", speed=1, start="11:00", data_dir=tmp_path / "sim") as sim:
            async with prepared(sim, engine) as live:
                seq = live.seq
                live.seq += 1
                coid = client_order_id(SESSION, seq, "TQQQ")
                intent = OrderIntent("TQQQ", "buy", 3.0, 0.05)
                live.portfolio.add_working(coid, intent, seq)
                live.dispatch.on_submitted(seq, intent, SubmitResult(coid, "unknown", reason="timeout"))
                await asyncio.to_thread(live.sync.poll_orders, [coid])
                await asyncio.sleep(UNSENT_GRACE + 0.1)
                await asyncio.to_thread(live.sync.poll_orders, [coid])
                await until(lambda: coid not in live.portfolio.working, "the order stops counting as working")
                live.dispatch.place(live.seq, {"SSO": 0.0, "TQQQ": 0.0}, [], None, trade=True)
                await settled(live)
                broker = sim.config().trading_client().get_orders(GetOrdersRequest(status=QueryOrderStatus.ALL))
        assert broker == []
        assert rows(engine, "SELECT status FROM orders WHERE client_order_id = :c", c=coid) == [("not_sent",)]
        kinds = {r[0] for r in rows(engine, "SELECT kind FROM events")}
        assert {"order_not_at_broker", "order_not_sent"} <= kinds

    run(scenario)


def test_one_bad_streamed_print_moves_no_price_and_trips_no_loss_stop(engine: Engine, tmp_path: Path) -> None:
    async def scenario() -> None:
        args = ["--seed-position=TQQQ:200"]
        with SimProcess(date="2025-11-20", speed=1, start="11:00", data_dir=tmp_path / "sim", extra_args=args) as sim:
            async with prepared(sim, engine, risk=RiskLimits(daily_loss_limit=0.05)) as live:
                t = live.book.next_minute
                price = live.portfolio.prices["TQQQ"]
                sso = live.portfolio.prices["SSO"]
                await streamed(live, _bar("TQQQ", t, 100.0, 100.0, 100.0, 0.5))  # close outside its range
                await streamed(live, _bar("TQQQ", t, price / 2, price / 2, price / 2, price / 2))  # a -50% print
                await streamed(live, _bar("SSO", t, sso, sso, sso, sso))
                assert live.book.missing(t) == {"TQQQ"}
                live.decider.decide(t, live.book.take(t), None, trade=False)
                assert live.portfolio.prices["TQQQ"] == price
                assert not live.gate.stopped
                # the next minute's good print is taken
                await streamed(live, _bar("TQQQ", t + timedelta(minutes=1), price, price * 1.001, price * 0.999, price))
                await settled(live)
        assert live.report.bars_refused == 2
        refused = rows(engine, "SELECT payload FROM events WHERE kind = 'bar_refused' ORDER BY id")
        assert refused[0][0]["reason"] == "open or close outside the bar's high-low range"
        assert "jumps -50.0%" in refused[1][0]["reason"]
        stored = rows(engine, "SELECT close FROM bars WHERE symbol = 'TQQQ' AND ts = :t", t=t)
        assert all(abs(float(c) - price) / price < 0.2 for (c,) in stored)  # no bad print stored

    run(scenario)


def test_a_bad_stored_print_seeds_no_price_on_a_restart(engine: Engine, tmp_path: Path) -> None:
    """An attempt that starts mid-day seeds its prices from stored bars (refills, corrections, late bars): a
    stored -50% print, the newest TQQQ bar, passes the streamed bars' checks first and sets no price."""
    def bad_print(live: TradingAttempt) -> None:
        with engine.begin() as conn:
            conn.execute(text("UPDATE bars SET open = close / 2, high = close / 2, low = close / 2, close = close / 2"
                             " WHERE symbol = 'TQQQ' AND ts = (SELECT max(ts) FROM bars WHERE symbol = 'TQQQ')"))

    async def scenario() -> None:
        args = ["--seed-position=TQQQ:200"]
        with SimProcess(date="2025-11-20", speed=1, start="11:00", data_dir=tmp_path / "sim", extra_args=args) as sim:
            async with prepared(sim, engine, setup=bad_print, risk=RiskLimits(daily_loss_limit=0.05)) as live:
                [(newest,)] = rows(engine, "SELECT close FROM bars WHERE symbol = 'TQQQ' ORDER BY ts DESC LIMIT 1")
                [(before,)] = rows(engine, "SELECT close FROM bars WHERE symbol = 'TQQQ' ORDER BY ts DESC"
                                           " OFFSET 1 LIMIT 1")
                assert live.portfolio.prices["TQQQ"] == float(before) != float(newest)
                assert live.report.bars_refused == 1
                t = live.book.next_minute
                live.decider.decide(t, {}, None, trade=False)
                assert not live.gate.stopped

    run(scenario)


def test_a_late_bar_is_stored_but_not_decided_on(engine: Engine, tmp_path: Path) -> None:
    async def scenario() -> None:
        with SimProcess(date="2025-11-20", speed=1, start="11:00", data_dir=tmp_path / "sim") as sim:
            async with prepared(sim, engine) as live:
                t = live.book.next_minute
                sso = live.portfolio.prices["SSO"]
                await streamed(live, _bar("SSO", t, sso, sso, sso, sso))
                live.decider.decide(t, live.book.take(t), None, trade=False)  # decided without TQQQ (a refill)
                tq = live.portfolio.prices["TQQQ"]
                await streamed(live, _bar("TQQQ", t, tq, tq * 1.01, tq * 0.99, tq * 1.005))  # arrives late
                await streamed(live, _bar("SSO", t, sso, sso * 1.01, sso * 0.99, sso * 1.002))  # a corrected bar
                await settled(live)
                assert live.portfolio.prices["TQQQ"] == tq  # not decided on
                assert live.book.next_minute == t + timedelta(minutes=1)
        stored = dict(rows(engine, "SELECT symbol, close FROM bars WHERE ts = :t", t=t))
        assert float(stored["TQQQ"]) == pytest.approx(tq * 1.005)
        assert float(stored["SSO"]) == pytest.approx(sso * 1.002)
        assert live.report.late_bars_stored == 2

    run(scenario)


def test_a_fill_whose_update_alpaca_py_cannot_parse_still_reaches_fills(engine: Engine, tmp_path: Path) -> None:
    async def scenario() -> None:
        with SimProcess(date="2025-11-20", speed=1, start="11:00", data_dir=tmp_path / "sim") as sim:
            async with prepared(sim, engine) as live:
                coid = client_order_id(SESSION, live.seq, "SSO")
                raw = sim.config().trading_client(raw_data=True)
                raw.submit_order(MarketOrderRequest(symbol="SSO", qty=7, side=OrderSide.BUY,
                                                    time_in_force=TimeInForce.DAY, client_order_id=coid))
                order: dict[str, Any] = raw.get_order_by_client_id(coid)  # type: ignore[assignment]
                await until(lambda: float(raw.get_order_by_client_id(coid)["filled_qty"]) == 7, "filled")
                order = raw.get_order_by_client_id(coid)  # type: ignore[assignment]
                order["type"] = order["order_type"] = "twap"  # an order type alpaca-py does not know
                data = {"event": "fill", "execution_id": str(uuid.uuid4()), "order": order, "qty": "7",
                        "price": order["filled_avg_price"], "position_qty": "7", "timestamp": order["filled_at"]}
                await trade_handler(live.trades.on_update)({"stream": "trade_updates", "data": data})
                await until(lambda: bool(rows(engine, "SELECT 1 FROM fills WHERE client_order_id = :c", c=coid)),
                            "the fill is stored")
                await settled(live)
                broker_positions = {p.symbol: float(p.qty) for p in sim.config().trading_client().get_all_positions()}
        fills = rows(engine, "SELECT sum(qty) FROM fills WHERE client_order_id = :c", c=coid)
        assert float(fills[0][0]) == 7.0
        assert live.portfolio.positions.get("SSO") == 7.0  # applied once in memory
        book = {s: float(q) for s, q in rows(engine, "SELECT symbol, qty FROM positions WHERE qty <> 0")}
        assert book == broker_positions == {"SSO": 7.0}
        unparsed = rows(engine, "SELECT payload FROM events WHERE kind = 'trade_update_unparsed'")
        assert len(unparsed) == 1 and unparsed[0][0]["client_order_id"] == coid
        assert live.report.trade_updates_unparsed == 1

    run(scenario)


def test_no_order_leaves_once_the_session_is_liquidating(engine: Engine, tmp_path: Path) -> None:
    """The phase is read right before orders leave, not only between minutes."""

    async def scenario() -> None:
        with SimProcess(date="2025-11-20", speed=1, start="11:00", data_dir=tmp_path / "sim") as sim:
            async with prepared(sim, engine) as live:
                await until(live.phase.connected.is_set, "the phase watch listens")
                set_phase(engine, SESSION, "liquidating")
                await until(lambda: live.phase.winding_down, "the phase change is seen")
                notes: list[str] = []
                placed = live.dispatch.place(live.seq, {"SSO": 0.3}, notes, None, trade=True)
                await asyncio.sleep(0.5)
                broker = sim.config().trading_client().get_orders(GetOrdersRequest(status=QueryOrderStatus.ALL))
        assert placed == [] and broker == []
        assert any("held: the session is liquidating" in n for n in notes)
        assert live.report.orders_held == 1

    run(scenario)


def test_no_order_leaves_at_the_trading_cut_off_whatever_minute_is_decided(engine: Engine, tmp_path: Path) -> None:
    """A late decision (an old minute decided after a stall) is held by the market time when it is sent."""

    async def scenario() -> None:
        with SimProcess(date="2025-11-20", speed=1, start="11:00", data_dir=tmp_path / "sim") as sim:
            s = session(SESSION)
            assert s is not None
            now = clock_for(sim.config()).now()
            async with prepared(sim, engine, trade_until=now + timedelta(seconds=1)) as live:
                notes: list[str] = []
                placed = live.dispatch.place(live.seq, {"SSO": 0.3}, notes, None, trade=True)
                await asyncio.sleep(0.5)
                broker = sim.config().trading_client().get_orders(GetOrdersRequest(status=QueryOrderStatus.ALL))
        assert placed == [] and broker == []
        assert any("trading cut-off" in n for n in notes)

    run(scenario)
