"""The event journal; each event is also announced with ``NOTIFY openbell_events`` (an account's on its own
channel: :func:`openbell.store.scope.channel`)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection, Engine, func, insert, select

from openbell.store.db import json_dumps
from openbell.store.models import Event
from openbell.store.scope import channel, schema_of

CHANNEL = "openbell_events"
_NOTIFY_LIMIT = 7900  # Postgres caps a NOTIFY payload below 8000 bytes


def record_event(
    engine_or_conn: Engine | Connection,
    session_date: date,
    kind: str,
    payload: dict[str, Any] | None = None,
    *,
    ts: datetime | None = None,
) -> int:
    """Journal one event and ``pg_notify`` it in the same transaction; return the event id.

    ``ts`` is the market time of the event (default: the insert time). With a Connection the event joins
    the caller's transaction (and is announced only when that commits); with an Engine it commits at once.
    The notification is JSON ``{id, session_date, ts, kind, payload}``; a payload too large for NOTIFY
    is left out (``"truncated": true``) and can be read from the table by id.
    """
    if not kind:
        raise ValueError("event kind is empty")
    if ts is not None and ts.tzinfo is None:
        raise ValueError(f"event ts must be timezone-aware, got {ts!r}")
    if isinstance(engine_or_conn, Engine):
        with engine_or_conn.begin() as conn:
            return _record(conn, session_date, kind, payload or {}, ts)
    return _record(engine_or_conn, session_date, kind, payload or {}, ts)


def _record(conn: Connection, session_date: date, kind: str, payload: dict[str, Any],
            ts: datetime | None) -> int:
    values: dict[str, Any] = {"session_date": session_date, "kind": kind, "payload": payload}
    if ts is not None:
        values["ts"] = ts
    event_id, stored_ts = conn.execute(insert(Event).values(**values).returning(Event.id, Event.ts)).one()
    message: dict[str, Any] = {
        "id": event_id, "session_date": session_date, "ts": stored_ts, "kind": kind, "payload": payload,
    }
    text = json_dumps(message)
    if len(text.encode()) > _NOTIFY_LIMIT:
        message.pop("payload")
        message["truncated"] = True
        text = json_dumps(message)
    conn.execute(select(func.pg_notify(channel(CHANNEL, schema_of(conn.engine.url)), text)))
    return int(event_id)
