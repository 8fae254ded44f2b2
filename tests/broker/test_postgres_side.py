"""Postgres side of trading: fencing, duplicate and recovered fills, the write queue (real Postgres)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import cast

import pytest
from alpaca.trading.models import Order, TradeUpdate
from sqlalchemy import Engine, text

from dates import SESSION
from openbell.adapters.alpaca.convert import order_report, trade_report
from openbell.broker import apply_trade_update, client_order_id
from openbell.broker.updates import recover_fills
from openbell.ports import BrokerPort, OrderReport, TradeReport
from openbell.trading import SessionLock, SessionLocked, Writer

EXEC_A, EXEC_B = "0c0f5a3e-1111-4a6b-9c1d-000000000001", "0c0f5a3e-1111-4a6b-9c1d-000000000002"


def _order(coid: str, status: str, filled: str) -> dict[str, object]:
    return {
        "id": "3b1f6a8e-93f4-4d37-9a7b-0b7b5d1f0e11", "client_order_id": coid,
        "created_at": "2025-11-20T20:00:01Z", "updated_at": "2025-11-20T20:00:01Z",
        "submitted_at": "2025-11-20T20:00:01Z", "filled_at": None, "symbol": "TQQQ",
        "asset_class": "us_equity", "qty": "10", "filled_qty": filled, "filled_avg_price": "50.5",
        "order_type": "market", "type": "market", "side": "buy", "time_in_force": "day", "status": status,
        "extended_hours": False, "order_class": "",
    }


def _fill(coid: str, execution_id: str, qty: str, filled: str, status: str) -> TradeReport:
    return trade_report(TradeUpdate(**{
        "event": "fill" if status == "filled" else "partial_fill", "execution_id": execution_id,
        "timestamp": "2025-11-20T20:00:02Z", "price": "50.5", "qty": qty, "position_qty": filled,
        "order": _order(coid, status, filled),
    }))


def test_duplicate_fill_events_are_applied_once(engine: Engine) -> None:
    coid = client_order_id(SESSION, 7, "TQQQ")
    first = _fill(coid, str(uuid.uuid4()), "4", "4", "partially_filled")
    second = _fill(coid, str(uuid.uuid4()), "6", "10", "filled")
    results = [apply_trade_update(engine, SESSION, u) for u in (first, second, first, second)]
    assert [r.new_fill for r in results] == [True, True, False, False]
    with engine.connect() as conn:
        fills = conn.execute(text("SELECT count(*), sum(qty) FROM fills")).one()
        position = conn.execute(text("SELECT qty, avg_entry_price, origin FROM positions")).one()
        order = conn.execute(text("SELECT status, filled_qty, decision_seq FROM orders")).one()
    assert (fills[0], float(fills[1])) == (2, 10.0)
    assert float(position[0]) == 10.0 and float(position[1]) == pytest.approx(50.5)
    assert position[2] == "strategy"
    assert (order[0], float(order[1]), order[2]) == ("filled", 10.0, 7)


def test_a_late_partial_fill_does_not_reopen_a_filled_order(engine: Engine) -> None:
    coid = client_order_id(SESSION, 8, "TQQQ")
    apply_trade_update(engine, SESSION, _fill(coid, str(uuid.uuid4()), "6", "10", "filled"))
    apply_trade_update(engine, SESSION, _fill(coid, str(uuid.uuid4()), "4", "4", "partially_filled"))
    with engine.connect() as conn:
        status, filled = conn.execute(text("SELECT status, filled_qty FROM orders")).one()
    assert (status, float(filled)) == ("filled", 10.0)


def test_second_holder_of_the_session_lock_is_refused(engine: Engine) -> None:
    with SessionLock(engine, SESSION, wait=0) as first:
        assert first.held
        with pytest.raises(SessionLocked, match="already being traded"):
            SessionLock(engine, SESSION, wait=0.3, poll=0.1).acquire()
        with SessionLock(engine, date(2025, 11, 21), wait=0):  # another session is independent
            pass
    with SessionLock(engine, SESSION, wait=0):  # released on exit
        pass


def test_writer_keeps_order_and_isolates_a_bad_write(engine: Engine) -> None:
    writer = Writer(engine)
    for i in range(50):
        writer.put(lambda conn, i=i: conn.execute(
            text("INSERT INTO events (session_date, kind, payload) VALUES (:d, 'n', CAST(:p AS jsonb))"),
            {"d": SESSION, "p": f'{{"i": {i}}}'}))
        if i == 25:
            writer.put(lambda conn: conn.execute(text("INSERT INTO no_such_table VALUES (1)")))
    assert writer.close(timeout=20)
    with engine.connect() as conn:
        seen = [r[0] for r in conn.execute(text("SELECT (payload->>'i')::int FROM events ORDER BY id"))]
    assert seen == list(range(50))
    assert writer.stats.dropped == 1


def _broker_order(coid: str, status: str, filled: str, avg: str) -> OrderReport:
    return order_report(Order(**{**_order(coid, status, filled), "filled_avg_price": avg}))


def _fills(engine: Engine) -> list[tuple[str, float, float]]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT execution_id, qty, price FROM fills ORDER BY ts, execution_id")).all()
    return [(r[0], float(r[1]), float(r[2])) for r in rows]


def _book_qty(engine: Engine) -> float:
    with engine.connect() as conn:
        return float(conn.execute(text("SELECT qty FROM positions WHERE symbol = 'TQQQ'")).scalar_one())


def test_fills_missed_by_the_stream_are_recovered_once_and_replays_do_not_double(engine: Engine) -> None:
    coid = client_order_id(SESSION, 9, "TQQQ")
    first = _fill(coid, EXEC_A, "4", "4", "partially_filled")
    apply_trade_update(engine, SESSION, first)
    # the stream is down while the other 6 fill; polling finds the order filled at an average of 51.1
    order = _broker_order(coid, "filled", "10", "51.1")
    with engine.begin() as conn:
        recovered = recover_fills(conn, SESSION, order)
    with engine.begin() as conn:
        assert recover_fills(conn, SESSION, order) is None  # the same broker state again: nothing
    assert recovered is not None and recovered.qty == 6.0
    assert recovered.execution_id == "recovered:3b1f6a8e-93f4-4d37-9a7b-0b7b5d1f0e11:10"
    # after the reconnect the broker replays both executions: neither is stored again
    late = _fill(coid, EXEC_B, "6", "10", "filled")
    assert [apply_trade_update(engine, SESSION, u).new_fill for u in (late, first)] == [False, False]

    fills = _fills(engine)
    assert sorted(f[0] for f in fills) == sorted([EXEC_A, recovered.execution_id])
    assert sum(f[1] for f in fills) == 10.0
    assert sum(f[1] * f[2] for f in fills) == pytest.approx(10 * 51.1)  # the order's cost, exactly
    assert _book_qty(engine) == 10.0
    with engine.connect() as conn:
        status, filled = conn.execute(text("SELECT status, filled_qty FROM orders")).one()
    assert (status, float(filled)) == ("filled", 10.0)


def test_fills_arriving_out_of_order_are_all_kept_and_nothing_is_recovered(engine: Engine) -> None:
    coid = client_order_id(SESSION, 10, "TQQQ")
    apply_trade_update(engine, SESSION, _fill(coid, EXEC_B, "6", "10", "filled"))
    apply_trade_update(engine, SESSION, _fill(coid, EXEC_A, "4", "4", "partially_filled"))
    with engine.begin() as conn:
        assert recover_fills(conn, SESSION, _broker_order(coid, "filled", "10", "50.5")) is None
    assert sorted(f[0] for f in _fills(engine)) == sorted([EXEC_A, EXEC_B])
    assert _book_qty(engine) == 10.0


def test_recovery_leaves_the_book_alone_when_asked(engine: Engine) -> None:
    coid = client_order_id(SESSION, 11, "TQQQ")
    with engine.begin() as conn:
        found = recover_fills(conn, SESSION, _broker_order(coid, "filled", "10", "50.5"), move_book=False)
        assert found is not None and found.price == pytest.approx(50.5)
        assert conn.execute(text("SELECT count(*) FROM positions")).scalar() == 0


def test_a_notional_order_keeps_its_dollars_and_the_shares_expected_whichever_row_comes_first(engine: Engine) -> None:
    from openbell.broker.book import upsert_order
    from openbell.broker.rows import order_row

    coid = client_order_id(SESSION, 9, "TQQQ")
    body = {**_order(coid, "filled", "4.95"), "qty": None, "notional": "250.55"}
    # the trade stream's fill (Alpaca says no qty) is written before the submit's answer with the estimate
    apply_trade_update(engine, SESSION, trade_report(TradeUpdate(**{
        "event": "fill", "execution_id": str(uuid.uuid4()), "timestamp": "2025-11-20T20:00:02Z", "price": "50.5",
        "qty": "4.95", "position_qty": "4.95", "order": body})))
    with engine.begin() as conn:
        upsert_order(conn, order_row(order_report(Order(**{**body, "status": "new", "filled_qty": "0"})), SESSION,
                                     "strategy", "target weight 0.0025", 4.96))
        upsert_order(conn, order_row(order_report(Order(**body)), SESSION, "strategy"))  # a later poll
        row = conn.execute(text("SELECT status, qty, notional, filled_qty FROM orders")).one()
    assert (row[0], float(row[1]), float(row[2]), float(row[3])) == ("filled", 4.96, 250.55, 4.95)


class _AccountBroker:
    """A broker holding open orders of this session: the given ids, none filled, no position."""

    def __init__(self, ids: list[str]) -> None:
        created = datetime(2025, 11, 20, 15, 0, tzinfo=UTC)
        self.open = [OrderReport(c, f"b-{i}", "TQQQ", "buy", "new", created, qty=1.0) for i, c in enumerate(ids)]
        self.cancelled: list[str] = []

    def positions(self) -> list[object]:
        return []

    def orders(self, scope: str, after: datetime | None = None) -> list[OrderReport]:
        return list(self.open)

    def cancel_order(self, broker_order_id: str, *, retry: bool = True) -> None:
        self.cancelled.append(broker_order_id)


def test_an_account_keeps_its_own_orders_and_treats_another_accounts_as_foreign(state_url: str,
                                                                                  engine: Engine) -> None:
    from openbell.broker.reconcile import reconcile
    from openbell.store import db
    from openbell.store.scope import scoped_url

    url = scoped_url(state_url, "alpha")
    db.upgrade(url)
    alpha = db.make_engine(url)
    try:
        ids = [client_order_id(SESSION, 3, "TQQQ", a) for a in ("alpha", None, "beta")]
        broker = _AccountBroker(ids)
        report = reconcile(cast(BrokerPort, broker), alpha, SESSION)
        assert (report.orders_found, report.orders_kept, report.max_decision_seq) == (1, 1, 3)
        assert report.cancelled == ids[1:] and broker.cancelled == ["b-1", "b-2"]
        # a trade update for the account's own id is the strategy's; another account's id is not
        apply_trade_update(alpha, SESSION, _fill(ids[0], EXEC_A, "1", "1", "filled"))
        apply_trade_update(alpha, SESSION, _fill(client_order_id(SESSION, 4, "TQQQ", "beta"), EXEC_B, "1", "1",
                                                  "filled"))
        with alpha.connect() as conn:
            rows = conn.execute(text("SELECT client_order_id, origin, decision_seq, status FROM orders"
                                     " ORDER BY client_order_id")).all()
    finally:
        alpha.dispose()
    assert [tuple(r) for r in rows] == [
        ("ob-20251120-000003-TQQQ", "adopted", None, "canceled"),
        ("ob-alpha-20251120-000003-TQQQ", "strategy", 3, "filled"),
        ("ob-beta-20251120-000003-TQQQ", "adopted", None, "canceled"),
        ("ob-beta-20251120-000004-TQQQ", "liquidation", None, "filled"),
    ]
    with engine.connect() as conn:  # the default account's state saw none of it
        assert conn.execute(text("SELECT count(*) FROM orders")).scalar() == 0
