"""A snapshot on connect, then every write to Postgres as a delta; subscriptions, heartbeats, history."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import requests
from sqlalchemy import text
from ui_helpers import good_cookie, recv_until, ws_connect
from websockets.exceptions import ConnectionClosed

from dates import SESSION as DAY
from openbell.store.db import make_engine
from openbell.store.events import record_event


def _order(engine: Any, coid: str, symbol: str, status: str = "new") -> None:
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO orders (client_order_id, session_date, symbol, side, qty, status)"
                 " VALUES (:c, :d, :s, 'buy', 3, :st) ON CONFLICT (client_order_id) DO UPDATE SET status = :st"),
            {"c": coid, "d": DAY, "s": symbol, "st": status},
        )


def test_snapshot_then_deltas(served, state_url) -> None:
    engine = make_engine(state_url)
    _order(engine, "ob-20251120-000001-SSO", "SSO")

    async def scenario() -> None:
        async with ws_connect(served.ws + "?date=2025-11-20") as ws:
            snap = await recv_until(ws, lambda m: m["type"] == "snapshot")
            assert snap["session"] == "2025-11-20" and not snap["data"]["empty"]
            assert [o["client_order_id"] for o in snap["data"]["orders"]] == ["ob-20251120-000001-SSO"]
            await asyncio.to_thread(_order, engine, "ob-20251120-000001-SSO", "SSO", "filled")
            row = await recv_until(ws, lambda m: m["type"] == "row" and m["table"] == "orders")
            assert row["row"]["status"] == "filled" and row["symbol"] == "SSO"
            await asyncio.to_thread(record_event, engine, DAY, "stream_restart", {"stream": "bars"})
            ev = await recv_until(ws, lambda m: m["type"] == "row" and m["table"] == "events")
            assert ev["row"]["kind"] == "stream_restart"
            beat = await recv_until(ws, lambda m: m["type"] == "heartbeat")
            assert beat["wall_time"] > 0

    asyncio.run(scenario())
    engine.dispose()


def test_a_bad_subscription_gets_an_error_and_the_socket_stays(served, state_url) -> None:
    engine = make_engine(state_url)

    async def scenario() -> None:
        async with ws_connect(served.ws + "?date=2025-11-20") as ws:
            await recv_until(ws, lambda m: m["type"] == "snapshot")
            await ws.send('{"type": "subscribe", "types": ["orders", "gossip"], "symbols": ["NOPE"]}')
            err = await recv_until(ws, lambda m: m["type"] == "error")
            assert "gossip" in err["error"] and "NOPE" in err["error"]
            await ws.send('{"type": "subscribe", "types": ["orders"], "symbols": ["SSO"]}')
            ok = await recv_until(ws, lambda m: m["type"] == "subscribed")
            assert ok["types"] == ["orders"] and ok["symbols"] == ["SSO"]
            await asyncio.to_thread(record_event, engine, DAY, "refill", {"bars": 3})
            await asyncio.to_thread(_order, engine, "ob-20251120-000002-TQQQ", "TQQQ")
            await asyncio.to_thread(_order, engine, "ob-20251120-000002-SSO", "SSO")
            row = await recv_until(ws, lambda m: m["type"] not in ("heartbeat",))
            assert row["type"] == "row" and row["row"]["client_order_id"] == "ob-20251120-000002-SSO"

    asyncio.run(scenario())
    engine.dispose()


def test_a_client_that_answers_no_heartbeat_is_dropped(served) -> None:
    async def scenario() -> int:
        async with ws_connect(served.ws) as ws:
            try:
                while True:
                    await asyncio.wait_for(ws.recv(), 10)  # reads, but never answers a heartbeat
            except ConnectionClosed as closed:
                return closed.rcvd.code if closed.rcvd else -1
        return -1

    assert asyncio.run(scenario()) == 4409


def test_a_session_without_data_is_an_empty_state(served) -> None:
    snap = requests.get(served.base + "/api/snapshot?date=2019-01-02", cookies=good_cookie(), timeout=10)
    assert snap.status_code == 200
    body = snap.json()
    assert body["empty"] is True and body["orders"] == [] and body["steps"] == [] and body["session"] == "2019-01-02"
    bad = requests.get(served.base + "/api/snapshot?date=yesterday", cookies=good_cookie(), timeout=10)
    assert bad.status_code == 422

    async def over_ws() -> dict[str, Any]:
        async with ws_connect(served.ws + "?date=2019-01-02") as ws:
            return await recv_until(ws, lambda m: m["type"] == "snapshot")

    assert asyncio.run(over_ws())["data"]["empty"] is True


def test_history_shows_book_against_broker(served, state_url) -> None:
    engine = make_engine(state_url)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO positions (session_date, symbol, qty) VALUES (:d, 'SSO', 10), (:d, 'TNA', 4)"),
                     {"d": DAY})
        conn.execute(text("INSERT INTO trading_sessions (session_date, phase) VALUES (:d, 'closed')"), {"d": DAY})
    record_event(engine, DAY, "book_corrected", {"symbol": "TNA", "postgres_qty": 4, "broker_qty": 6},
                 ts=datetime(2025, 11, 20, 16, 0, tzinfo=UTC))
    body = requests.get(served.base + "/api/snapshot?date=2025-11-20", cookies=good_cookie(), timeout=10).json()
    assert body["phase"]["phase"] == "closed"
    assert {p["symbol"]: p["qty"] for p in body["positions"]} == {"SSO": 10.0, "TNA": 4.0}
    assert body["broker"]["positions"] == {"SSO": 10.0, "TNA": 6.0}
    sessions = requests.get(served.base + "/api/sessions", cookies=good_cookie(), timeout=10).json()
    assert sessions["sessions"] == ["2025-11-20"]
    engine.dispose()


def test_a_run_id_opens_its_session(served, state_url) -> None:
    engine = make_engine(state_url)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO step_runs (session_date, step, run_id, status) VALUES (:d, 'download',"
                          " 'manual__late-start', 'success')"), {"d": DAY})
    engine.dispose()

    def session(run_id: str) -> Any:
        got = requests.get(served.base + "/api/snapshot", params={"run_id": run_id}, cookies=good_cookie(), timeout=10)
        return got.json().get("session") if got.status_code == 200 else got.status_code

    assert session("manual__late-start") == "2025-11-20"
    assert session("scheduled__2025-11-21T14:30:00+00:00") == "2025-11-21"
    assert session("no-date-in-here") == 422
