"""Who set a session's risk state (the loss stop, an operator or the strategy's failures) and the extra loss budget
granted by resumes: migrations 0005 and 0006 (with their backfill and their downgrade), set_risk's
``cause=``/``extra_loss=``, the journal."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime
from typing import Any

import pytest
from alembic import command
from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import IntegrityError

from dates import SESSION as DAY
from openbell.store import db
from openbell.store.sessions import RiskRecord, get_phase, get_risk, record_open_equity, set_phase, set_risk

AT = datetime(2025, 11, 20, 17, 0, tzinfo=UTC)
NEW_COLUMNS = {"risk_cause", "extra_loss"}


def _risk_events(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return list(conn.execute(text("SELECT payload FROM events WHERE kind = 'risk_state' ORDER BY id")).scalars())


def _migrate(engine: Engine, revision: str, *, down: bool = False) -> None:
    cfg = db._alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        (command.downgrade if down else command.upgrade)(cfg, revision)


def _set_04(engine: Engine, day: date, state: str, by: str | None) -> None:
    """A session row as 0004 stored it (no cause)."""
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO trading_sessions (session_date, phase, risk_state, risk_by, risk_reason)"
                          " VALUES (:d, 'trading', :s, :b, 'why')"), {"d": day, "s": state, "b": by})


def test_migration_0005_adds_cause_and_extra_loss_backfills_the_cause_and_goes_back_down(empty_db_url: str) -> None:
    cfg = db._alembic_config()
    engine = db.make_engine(empty_db_url)
    try:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0004")
        _set_04(engine, date(2025, 11, 17), "HALTED", "openbell")  # the loss stop, as 0004 stored it
        _set_04(engine, date(2025, 11, 18), "REDUCING", "alice")  # an operator's halt
        _set_04(engine, date(2025, 11, 19), "ACTIVE", None)  # never set
        _migrate(engine, "0005")
        columns = {c["name"]: c for c in inspect(engine).get_columns("trading_sessions")}
        assert set(columns) >= NEW_COLUMNS
        assert columns["risk_cause"]["nullable"] and not columns["extra_loss"]["nullable"]
        assert str(columns["extra_loss"]["type"]) == "NUMERIC"
        assert get_risk(engine, date(2025, 11, 17)).cause == "loss_stop"
        assert get_risk(engine, date(2025, 11, 18)).cause == "operator"
        assert get_risk(engine, date(2025, 11, 19)).cause is None
        assert {get_risk(engine, date(2025, 11, d)).extra_loss for d in (17, 18, 19)} == {0.0}
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0004")
        assert not NEW_COLUMNS & {c["name"] for c in inspect(engine).get_columns("trading_sessions")}
        with engine.connect() as conn:
            assert conn.execute(text("SELECT risk_state FROM trading_sessions WHERE session_date = '2025-11-17'"
                                     )).scalar_one() == "HALTED"
        _migrate(engine, "0005")
    finally:
        engine.dispose()


def test_migration_0006_lets_the_strategys_failures_set_the_state_and_goes_back_down_as_an_operator(
        empty_db_url: str) -> None:
    engine = db.make_engine(empty_db_url)
    try:
        _migrate(engine, "0005")
        set_phase(engine, DAY, "trading")
        with pytest.raises(IntegrityError, match="ck_trading_sessions_risk_cause"), engine.begin() as conn:
            conn.execute(text("UPDATE trading_sessions SET risk_cause = 'strategy_failed'"))
        assert db.upgrade(empty_db_url) == db.head_revision()
        stored = set_risk(engine, DAY, "REDUCING", "the strategy failed 5 minutes in a row", "openbell", at=AT,
                          cause="strategy_failed")
        assert (stored.state, stored.cause, stored.loss_stopped) == ("REDUCING", "strategy_failed", False)
        assert _risk_events(engine)[-1]["cause"] == "strategy_failed"
        _migrate(engine, "0005", down=True)
        assert get_risk(engine, DAY).cause == "operator"  # resumed plainly by the older code too
        assert db.upgrade(empty_db_url) == db.head_revision()
    finally:
        engine.dispose()


def test_a_record_without_a_row_has_no_cause_and_no_extra_loss(engine: Engine) -> None:
    record = get_risk(engine, DAY)
    assert (record.cause, record.extra_loss) == (None, 0.0)
    assert record.as_dict()["cause"] is None and record.as_dict()["extra_loss"] == 0.0


def test_set_risk_stores_the_cause_and_the_cumulative_extra_loss_and_journals_them(engine: Engine) -> None:
    record_open_equity(engine, DAY, 100_000.0)
    stop = set_risk(engine, DAY, "REDUCING", "daily loss 3.1%", "openbell", at=AT, cause="loss_stop")
    assert (stop.state, stop.cause, stop.extra_loss, stop.open_equity) == ("REDUCING", "loss_stop", 0.0, 100_000.0)
    resumed = set_risk(engine, DAY, "ACTIVE", "reviewed", "alice", cause="operator", extra_loss=1_500.25)
    assert (resumed.cause, resumed.extra_loss) == ("operator", 1_500.25)
    assert get_risk(engine, DAY) == resumed
    halted = set_risk(engine, DAY, "HALTED", "news", "bob", cause="operator")  # extra_loss not given: kept
    assert halted.extra_loss == 1_500.25
    with engine.connect() as conn:
        stored = conn.execute(text("SELECT extra_loss FROM trading_sessions")).scalar_one()
    assert str(stored) == "1500.25"  # numeric, exact
    events = _risk_events(engine)
    assert events[0] == {"from": "ACTIVE", "to": "REDUCING", "reason": "daily loss 3.1%", "by": "openbell",
                         "cause": "loss_stop"}
    assert events[1] == {"from": "REDUCING", "to": "ACTIVE", "reason": "reviewed", "by": "alice",
                         "cause": "operator", "extra_loss": 1_500.25}
    assert events[2] == {"from": "ACTIVE", "to": "HALTED", "reason": "news", "by": "bob", "cause": "operator"}
    assert set_risk(engine, DAY, "ACTIVE", "plain", "carol").cause is None  # no cause given: none stored


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cause": "manual"}, "invalid risk cause 'manual'"),
        ({"cause": ""}, "invalid risk cause"),
        ({"extra_loss": -1.0}, "extra_loss must be a finite number >= 0"),
        ({"extra_loss": math.nan}, "extra_loss must be a finite number >= 0"),
        ({"extra_loss": math.inf}, "extra_loss must be a finite number >= 0"),
        ({"extra_loss": True}, "extra_loss must be a finite number >= 0"),
        ({"extra_loss": "100"}, "extra_loss must be a finite number >= 0"),
    ],
)
def test_set_risk_refuses_a_bad_cause_or_extra_loss_and_changes_nothing(engine: Engine, kwargs: dict[str, Any],
                                                                        message: str) -> None:
    with pytest.raises(ValueError, match=message):
        set_risk(engine, DAY, "ACTIVE", "why", "alice", **kwargs)
    assert get_phase(engine, DAY) is None and _risk_events(engine) == []


def test_the_constraints_refuse_a_bad_cause_or_a_negative_extra_loss_written_directly(engine: Engine) -> None:
    set_phase(engine, DAY, "trading")
    with pytest.raises(IntegrityError, match="ck_trading_sessions_risk_cause"), engine.begin() as conn:
        conn.execute(text("UPDATE trading_sessions SET risk_cause = 'someone'"))
    with pytest.raises(IntegrityError, match="ck_trading_sessions_extra_loss"), engine.begin() as conn:
        conn.execute(text("UPDATE trading_sessions SET extra_loss = -5"))
    assert get_risk(engine, DAY) == RiskRecord()
