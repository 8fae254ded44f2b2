"""The event journal and its NOTIFY."""

from __future__ import annotations

import json
import select
from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

import psycopg2
import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from openbell.store.events import CHANNEL, record_event

DAY = date(2025, 3, 3)


@pytest.fixture
def listener(state_url: str) -> Iterator[Any]:
    parsed = make_url(state_url)
    conn = psycopg2.connect(
        host=parsed.host,
        port=parsed.port,
        user=parsed.username,
        password=parsed.password,
        dbname=parsed.database,
    )
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f"LISTEN {CHANNEL}")
    yield conn
    conn.close()


def next_notification(conn: Any, wait: float = 10.0) -> dict[str, Any]:
    while not conn.notifies:
        if select.select([conn], [], [], wait) == ([], [], []):
            raise AssertionError("no notification arrived")
        conn.poll()
    note = conn.notifies.pop(0)
    assert note.channel == CHANNEL
    return json.loads(note.payload)


def test_record_event_notifies_listeners(engine: Engine, listener: Any) -> None:
    market_ts = datetime(2025, 3, 3, 15, 1, tzinfo=UTC)
    event_id = record_event(engine, DAY, "stream_reconnect", {"gap_minutes": 2}, ts=market_ts)
    note = next_notification(listener)
    assert note["id"] == event_id
    assert (note["kind"], note["payload"], note["session_date"]) == (
        "stream_reconnect",
        {"gap_minutes": 2},
        "2025-03-03",
    )
    assert datetime.fromisoformat(note["ts"]) == market_ts
    with engine.connect() as conn:
        row = conn.execute(text("SELECT kind, payload, ts FROM events WHERE id = :i"), {"i": event_id}).one()
    assert (row.kind, row.payload, row.ts) == ("stream_reconnect", {"gap_minutes": 2}, market_ts)


def test_rolled_back_event_is_neither_stored_nor_announced(engine: Engine, listener: Any) -> None:
    with engine.connect() as conn:
        record_event(conn, DAY, "ghost", {"n": 1})
        conn.rollback()
    kept = record_event(engine, DAY, "kept", {"n": 2})
    assert next_notification(listener)["id"] == kept  # the first notification is the committed one
    with engine.connect() as conn:
        assert conn.execute(text("SELECT kind FROM events")).scalars().all() == ["kept"]


def test_large_payload_is_stored_whole_and_announced_by_id(engine: Engine, listener: Any) -> None:
    payload = {"symbols": [f"SYM{i:04d}" for i in range(2000)]}
    event_id = record_event(engine, DAY, "reconcile_difference", payload)
    note = next_notification(listener)
    assert (note["id"], note["truncated"]) == (event_id, True)
    assert "payload" not in note
    with engine.connect() as conn:
        stored = conn.execute(text("SELECT payload FROM events WHERE id = :i"), {"i": event_id}).scalar_one()
    assert stored == payload
