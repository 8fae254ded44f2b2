"""The broker against a real simulator and real Postgres: reconcile, idempotent submit, liquidation."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

from alpaca.trading.enums import OrderSide, QueryOrderStatus, TimeInForce
from alpaca.trading.requests import GetOrdersRequest, MarketOrderRequest
from sqlalchemy import Engine, text

from dates import SESSION
from openbell.adapters.alpaca.broker import AlpacaBroker, submit
from openbell.broker import client_order_id, liquidate, reconcile
from openbell.calendar import session
from openbell.clock import clock_for
from openbell.sim.testing import SimProcess
from openbell.store.sessions import get_phase


def _all_orders(client) -> list:  # type: ignore[no-untyped-def]
    return client.get_orders(GetOrdersRequest(status=QueryOrderStatus.ALL, limit=500))


def test_reconcile_adopts_a_position_and_cancels_a_foreign_order(engine: Engine, tmp_path: Path) -> None:
    with SimProcess(date="2025-11-20", speed=1, start="09:25", data_dir=tmp_path / "sim",
                    extra_args=["--seed-position", "AAPL:100"]) as sim:
        config = sim.config()
        client = config.trading_client()
        # the market is closed at 09:25: both orders are accepted and stay open
        client.submit_order(MarketOrderRequest(symbol="MSFT", qty=5, side=OrderSide.BUY,
                                               time_in_force=TimeInForce.DAY, client_order_id="manual-1"))
        ours = client_order_id(SESSION, 3, "SSO")
        client.submit_order(MarketOrderRequest(symbol="SSO", qty=2, side=OrderSide.BUY,
                                               time_in_force=TimeInForce.DAY, client_order_id=ours))

        report = reconcile(AlpacaBroker(config), engine, SESSION)

        assert report.adopted == ["AAPL"] and report.positions_adopted == 1
        assert report.cancelled == ["manual-1"] and report.orders_cancelled == 1
        assert report.orders_kept == 1 and report.max_decision_seq == 3
        still_open = client.get_orders(GetOrdersRequest(status=QueryOrderStatus.OPEN))
        assert [o.client_order_id for o in still_open] == [ours]
        with engine.connect() as conn:
            book = conn.execute(text("SELECT symbol, qty, origin FROM positions")).all()
            orders = dict(conn.execute(text("SELECT client_order_id, status FROM orders")).all())
            kinds = {r[0] for r in conn.execute(text("SELECT kind FROM events"))}
        assert [(s, float(q), o) for s, q, o in book] == [("AAPL", 100.0, "adopted")]
        assert orders["manual-1"] == "canceled" and ours in orders
        assert {"position_adopted", "foreign_order_cancelled"} <= kinds

        again = reconcile(AlpacaBroker(config), engine, SESSION)  # a second attempt finds nothing new
        assert (again.positions_adopted, again.orders_cancelled, again.differences) == (0, 0, 0)


def test_submit_is_idempotent_and_rejections_are_reported(tmp_path: Path) -> None:
    with SimProcess(date="2025-11-20", speed=1, start="10:00", data_dir=tmp_path / "sim") as sim:
        client = sim.config().trading_client()
        coid = client_order_id(SESSION, 1, "TQQQ")
        first = submit(client, client_order_id=coid, symbol="TQQQ", qty=3, side="buy")
        second = submit(client, client_order_id=coid, symbol="TQQQ", qty=3, side="buy")
        assert first.outcome == "submitted" and second.outcome == "existing"
        assert first.order is not None and second.order is not None
        assert second.order.broker_order_id == first.order.broker_order_id
        assert [o.client_order_id for o in _all_orders(client)] == [coid]

        unknown = submit(client, client_order_id=client_order_id(SESSION, 2, "NOPE"), symbol="NOPE", qty=1,
                         side="buy")
        too_big = submit(client, client_order_id=client_order_id(SESSION, 2, "SSO"), symbol="SSO",
                         qty=10_000_000, side="buy")
        assert unknown.outcome == "rejected" and unknown.reason
        assert too_big.outcome == "rejected" and too_big.http_status == 403 and too_big.reason

        # under a storm of 429/500 answers every id still leads to at most one order
        sim.set_faults(rest_error_rate=0.4)
        outcomes = [
            submit(client, client_order_id=client_order_id(SESSION, 10 + i, "SSO"), symbol="SSO", qty=1,
                   side="buy", attempts=8).outcome
            for i in range(6)
        ]
        injected = sim.faults()["counters"]
        sim.set_faults(rest_error_rate=0.0)
        assert injected.get("rest_429", 0) + injected.get("rest_500", 0) > 0
        ids = [o.client_order_id for o in _all_orders(client)]
        assert len(ids) == len(set(ids))
        placed = {i for i in ids if i.endswith("-SSO")}
        assert sum(o in ("submitted", "existing") for o in outcomes) == len(placed)


def test_liquidation_leaves_the_account_flat(engine: Engine, tmp_path: Path) -> None:
    s = session(SESSION)
    assert s is not None
    with SimProcess(date="2025-11-20", speed=60, start="15:50", data_dir=tmp_path / "sim",
                    extra_args=["--seed-position", "TQQQ:50", "--seed-position", "SQQQ:-20"]) as sim:
        config = sim.config()
        clock = clock_for(config)
        broker = AlpacaBroker(config)
        reconcile(broker, engine, SESSION)
        report = liquidate(broker, engine, SESSION, clock, deadline=s.close - timedelta(minutes=1))
        client = config.trading_client()
        assert report.flat
        assert client.get_all_positions() == []
        assert client.get_orders(GetOrdersRequest(status=QueryOrderStatus.OPEN)) == []
        assert get_phase(engine, SESSION) == "liquidating"
        with engine.connect() as conn:
            left = conn.execute(text("SELECT count(*) FROM positions WHERE qty <> 0")).scalar()
            origins = {r[0] for r in conn.execute(text("SELECT origin FROM orders"))}
        assert left == 0 and origins == {"liquidation"}
        # no trade stream ran: the close orders' fills come from the broker's final word on them
        assert report.fills_recovered == 2
        with engine.connect() as conn:
            fills = conn.execute(text("SELECT symbol, side, qty, execution_id FROM fills ORDER BY symbol")).all()
        assert [(sym, side, float(q)) for sym, side, q, _ in fills] == [("SQQQ", "buy", 20.0), ("TQQQ", "sell", 50.0)]
        assert all(e.startswith("recovered:") for *_, e in fills)
        again = liquidate(broker, engine, SESSION, clock, deadline=s.close - timedelta(minutes=1))
        assert again.flat and again.fills_recovered == 0  # a rerun stores nothing twice


def test_reconcile_records_a_notional_order_it_finds_with_its_dollars_and_once_final_its_shares(
        engine: Engine, tmp_path: Path) -> None:
    """A notional buy sent before a crash, never recorded: Alpaca says no qty for it. Found working, it is stored
    with its dollars (shares not yet known); found filled by a later attempt, with the shares it bought."""
    with SimProcess(date="2025-11-20", speed=60, start="09:29", data_dir=tmp_path / "sim") as sim:
        client = sim.config().trading_client()
        ours = client_order_id(SESSION, 4, "SSO")
        client.submit_order(MarketOrderRequest(symbol="SSO", notional=250.55, side=OrderSide.BUY,
                                               time_in_force=TimeInForce.DAY, client_order_id=ours))
        broker = AlpacaBroker(sim.config())
        reconcile(broker, engine, SESSION)
        with engine.connect() as conn:
            working = conn.execute(text("SELECT status, qty, notional FROM orders")).one()
        assert working[0] in ("new", "accepted") and float(working[1]) == 0 and float(working[2]) == 250.55
        order = client.get_order_by_client_id(ours)
        deadline = time.monotonic() + 30
        while order.status != "filled" and time.monotonic() < deadline:  # fills once the market opens at 09:30
            time.sleep(0.2)
            order = client.get_order_by_client_id(ours)
        assert order.status == "filled" and order.qty is None, order
        reconcile(broker, engine, SESSION)
        with engine.connect() as conn:
            filled = conn.execute(text("SELECT status, qty, notional, filled_qty FROM orders")).one()
    assert filled[0] == "filled" and float(filled[2]) == 250.55
    assert float(filled[1]) == float(filled[3]) == float(order.filled_qty) > 0
