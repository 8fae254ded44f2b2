"""A session's risk state and open equity: migration 0004, get/set with its journal event and its row
notification, the first-write-wins open equity, and the constraint on the state."""

from __future__ import annotations

import json
import select
from datetime import UTC, date, datetime
from typing import Any

import psycopg2
import pytest
from alembic import command
from sqlalchemy import Engine, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError

from dates import SESSION as DAY
from openbell.store import db
from openbell.store.sessions import (
    RiskRecord,
    get_phase,
    get_risk,
    record_open_equity,
    set_phase,
    set_risk,
)

AT = datetime(2025, 11, 20, 17, 0, tzinfo=UTC)  # 12:00 ET
RISK_COLUMNS = {"risk_state", "risk_reason", "risk_by", "risk_changed_at", "open_equity"}


def _risk_events(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return list(conn.execute(text("SELECT payload FROM events WHERE kind = 'risk_state' ORDER BY id")).scalars())


def test_migration_0004_adds_the_risk_columns_keeps_rows_active_and_goes_back_down(empty_db_url: str) -> None:
    cfg = db._alembic_config()
    engine = db.make_engine(empty_db_url)
    try:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0003")
        set_phase(engine, DAY, "trading")  # a session stored before 0004
        assert db.upgrade(empty_db_url) == db.head_revision()  # 0004 and what came after
        columns = {c["name"]: c for c in inspect(engine).get_columns("trading_sessions")}
        assert set(columns) >= RISK_COLUMNS
        assert not columns["risk_state"]["nullable"]
        assert all(columns[c]["nullable"] for c in RISK_COLUMNS - {"risk_state"})
        assert str(columns["open_equity"]["type"]) == "NUMERIC"
        assert get_risk(engine, DAY) == RiskRecord("ACTIVE", None, None, None, None)
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0003")
        assert not RISK_COLUMNS & {c["name"] for c in inspect(engine).get_columns("trading_sessions")}
        assert get_phase(engine, DAY) == "trading"
        assert db.upgrade(empty_db_url) == db.head_revision()  # 0004 and what came after
    finally:
        engine.dispose()


def test_a_session_without_a_row_is_active(engine: Engine) -> None:
    assert get_risk(engine, DAY) == RiskRecord()
    with engine.connect() as conn:  # a connection works as well as an engine
        assert get_risk(conn, DAY).state == "ACTIVE"
    assert get_phase(engine, DAY) is None  # reading creates nothing


def test_set_risk_creates_the_row_journals_the_change_and_keeps_the_phase(engine: Engine) -> None:
    halted = set_risk(engine, DAY, "HALTED", "daily loss limit: -2.1% of the open equity", "openbell", at=AT)
    assert (halted.state, halted.reason, halted.by, halted.changed_at) == (
        "HALTED", "daily loss limit: -2.1% of the open equity", "openbell", AT)
    assert get_risk(engine, DAY) == halted
    assert get_phase(engine, DAY) == "pre_open"  # the row was created for the risk state alone
    set_phase(engine, DAY, "trading")
    assert get_risk(engine, DAY) == halted  # a phase change leaves the risk state alone
    resumed = set_risk(engine, DAY, "ACTIVE", " loss reviewed ", " alice ")
    assert (resumed.state, resumed.reason, resumed.by) == ("ACTIVE", "loss reviewed", "alice")
    assert resumed.changed_at is not None and resumed.changed_at > AT  # default: the database's now
    assert get_phase(engine, DAY) == "trading"
    assert _risk_events(engine) == [
        {"from": "ACTIVE", "to": "HALTED", "reason": "daily loss limit: -2.1% of the open equity", "by": "openbell"},
        {"from": "HALTED", "to": "ACTIVE", "reason": "loss reviewed", "by": "alice"},
    ]
    with engine.connect() as conn:
        ts = conn.execute(text("SELECT ts FROM events WHERE kind = 'risk_state' ORDER BY id LIMIT 1")).scalar_one()
    assert ts == AT  # the journal carries the market time of the change
    assert get_risk(engine, date(2025, 11, 21)).state == "ACTIVE"  # per session


@pytest.mark.parametrize(
    ("state", "reason", "by", "message"),
    [
        ("STOPPED", "why", "alice", "invalid risk state 'STOPPED'"),
        ("halted", "why", "alice", "invalid risk state"),
        ("HALTED", "  ", "alice", "non-empty reason"),
        ("HALTED", "why", "", "non-empty by"),
    ],
)
def test_set_risk_refuses_bad_input_and_changes_nothing(engine: Engine, state: str, reason: str, by: str,
                                                        message: str) -> None:
    with pytest.raises(ValueError, match=message):
        set_risk(engine, DAY, state, reason, by)
    with pytest.raises(ValueError, match="timezone-aware"):
        set_risk(engine, DAY, "HALTED", "why", "alice", at=datetime(2025, 11, 20, 12, 0))
    assert get_phase(engine, DAY) is None and _risk_events(engine) == []


def test_the_constraint_refuses_a_bad_state_written_directly(engine: Engine) -> None:
    set_phase(engine, DAY, "trading")
    with pytest.raises(IntegrityError, match="ck_trading_sessions_risk_state"), engine.begin() as conn:
        conn.execute(text("UPDATE trading_sessions SET risk_state = 'PAUSED'"))
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(text("UPDATE trading_sessions SET risk_state = NULL"))
    assert get_risk(engine, DAY).state == "ACTIVE"


def test_the_open_equity_is_written_once_and_the_first_write_wins(engine: Engine) -> None:
    assert record_open_equity(engine, DAY, 100_000.25) == 100_000.25
    assert get_phase(engine, DAY) == "pre_open"
    assert record_open_equity(engine, DAY, 98_000.0) == 100_000.25  # a retry's later equity is ignored
    set_risk(engine, DAY, "HALTED", "loss stop", "openbell")
    set_phase(engine, DAY, "liquidating")
    assert get_risk(engine, DAY).open_equity == 100_000.25
    with engine.connect() as conn:
        stored = conn.execute(text("SELECT open_equity FROM trading_sessions")).scalar_one()
    assert str(stored) == "100000.25"  # numeric, exact
    for bad in (0, -1.0, float("nan"), True, "100000"):
        with pytest.raises(ValueError, match="open equity must be a positive number"):
            record_open_equity(engine, date(2025, 11, 21), bad)  # type: ignore[arg-type]
    assert get_phase(engine, date(2025, 11, 21)) is None


def _listen(state_url: str) -> Any:
    u = make_url(state_url)
    conn = psycopg2.connect(host=u.host, port=u.port, user=u.username, password=u.password, dbname=u.database)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("LISTEN openbell_rows")
    return conn


def _rows(conn: Any, wait: float = 10.0) -> list[dict[str, Any]]:
    if not conn.notifies and select.select([conn], [], [], wait) == ([], [], []):
        raise AssertionError("no notification arrived")
    conn.poll()
    found = [json.loads(n.payload) for n in conn.notifies]
    conn.notifies.clear()
    return found


def test_risk_changes_are_announced_with_the_session_row(engine: Engine, state_url: str) -> None:
    listener = _listen(state_url)
    try:
        set_risk(engine, DAY, "REDUCING", "news", "alice", at=AT)
        notes = [n for n in _rows(listener) if n["table"] == "trading_sessions"]
        assert notes and notes[-1]["key"] == {"session_date": "2025-11-20"}
        row = notes[-1]["row"]
        assert (row["risk_state"], row["risk_reason"], row["risk_by"]) == ("REDUCING", "news", "alice")
        record_open_equity(engine, DAY, 100_000.0)
        notes = [n for n in _rows(listener) if n["table"] == "trading_sessions"]
        assert notes[-1]["row"]["open_equity"] == 100000.0
    finally:
        listener.close()


