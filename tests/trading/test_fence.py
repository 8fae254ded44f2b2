"""The session fence survives a lost connection, and never while another attempt holds it."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import Engine, text

from openbell.session import SessionLock, SessionLocked

SESSION = date(2025, 11, 20)


def _drop_connection(engine: Engine, lock: SessionLock) -> None:
    """Terminate the lock's backend, as a Postgres restart would."""
    assert lock._conn is not None
    pid = lock._conn.execute(text("SELECT pg_backend_pid()")).scalar()
    lock._conn.commit()
    with engine.connect() as conn:
        assert conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar()
        conn.commit()


def test_a_lost_lock_is_taken_again(engine: Engine) -> None:
    with SessionLock(engine, SESSION, wait=0) as lock:
        assert lock.verify()
        _drop_connection(engine, lock)
        assert lock.verify()  # reconnected and holds it again
        with pytest.raises(SessionLocked):
            SessionLock(engine, SESSION, wait=0).acquire()


def test_a_lock_taken_by_another_attempt_meanwhile_stops_this_one(engine: Engine) -> None:
    lock = SessionLock(engine, SESSION, wait=0)
    lock.acquire()
    try:
        _drop_connection(engine, lock)
        with SessionLock(engine, SESSION, wait=0), pytest.raises(SessionLocked, match="another attempt holds it"):
            lock.verify()
        assert not lock.held
    finally:
        lock.release()
