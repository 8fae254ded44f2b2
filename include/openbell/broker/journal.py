"""The event journal as the broker and session write it (delegates to the store's ``record_event``)."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

from sqlalchemy import Connection, Engine


def event(conn: Connection | Engine, session_date: date, kind: str, payload: dict[str, Any]) -> None:
    """Record one event (and its NOTIFY) in the caller's transaction."""
    from openbell.store.events import record_event

    record_event(conn, session_date, kind, json.loads(json.dumps(payload, default=str)))
