"""The session fence survives a lost connection, and never while another attempt holds it."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from dates import SESSION
from openbell.adapters.alpaca.data import AlpacaMarketData
from openbell.adapters.alpaca.venue import alpaca_venue
from openbell.calendar import previous_sessions
from openbell.clock import clock_for
from openbell.ports import Window
from openbell.sim.testing import SimProcess
from openbell.store.bars import upsert_bars
from openbell.strategy import DEFAULT_UNIVERSE, RiskLimits
from openbell.trading import SessionLock, SessionLocked, run_trading_attempt
from openbell.trading.fence import lock_key


def _drop_connection(engine: Engine, lock: SessionLock) -> None:
    """Terminate the lock's backend, as a Postgres restart would."""
    assert lock._conn is not None
    pid = lock._conn.execute(text("SELECT pg_backend_pid()")).scalar()
    lock._conn.commit()
    with engine.connect() as conn:
        assert conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar()
        conn.commit()
        # the backend exits (and its advisory locks go) after the call returns: wait until it has
        deadline = time.monotonic() + 30
        while conn.execute(text("SELECT count(*) FROM pg_stat_activity WHERE pid = :p"), {"p": pid}).scalar():
            assert time.monotonic() < deadline, f"backend {pid} still there 30 s after it was terminated"
            time.sleep(0.02)
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


def test_a_live_session_that_lost_its_lock_to_another_attempt_stops_trading(engine: Engine, tmp_path: Path) -> None:
    """Postgres dropped the session's connection and another attempt took the lock: this one stops."""
    universe = list(DEFAULT_UNIVERSE)
    with SimProcess(date=SESSION.isoformat(), speed=60, start="15:20", data_dir=tmp_path / "sim") as sim:
        config, clock = sim.config(), clock_for(sim.config())
        prior = previous_sessions(SESSION, 2)
        upsert_bars(engine, AlpacaMarketData(config).bars(universe, Window(prior[0].open, clock.now())),
                    source="rest")
        outcome: dict[str, BaseException] = {}

        def trade() -> None:
            try:
                run_trading_attempt(alpaca_venue(config), engine, SESSION, clock=clock, universe=universe,
                                 warmup_sessions=2,
                                 risk=RiskLimits(max_weight=0.4, max_gross=1.0, daily_loss_limit=None))
            except BaseException as exc:
                outcome["error"] = exc

        trader = threading.Thread(target=trade, daemon=True)
        trader.start()
        while not _count(engine, "SELECT count(*) FROM decisions"):
            time.sleep(0.05)
        other = engine.connect()  # the other attempt
        try:
            taken = False
            while not taken:
                holder = other.execute(text("SELECT pid FROM pg_locks WHERE locktype = 'advisory'")).scalar()
                if holder is not None:
                    other.execute(text("SELECT pg_terminate_backend(:p)"), {"p": holder})
                give_up = time.monotonic() + 0.5
                while not taken and time.monotonic() < give_up:
                    taken = bool(other.execute(text("SELECT pg_try_advisory_lock(:k)"),
                                               {"k": lock_key(SESSION)}).scalar())
                other.commit()
            taken_at = clock.now()
            trader.join(timeout=60)
            assert not trader.is_alive()
            assert isinstance(outcome.get("error"), SessionLocked), outcome
            assert "another attempt holds it" in str(outcome["error"])
            # the lock is re-checked every minute: at most the minute in flight was decided after it
            with engine.connect() as conn:
                last = conn.execute(text("SELECT max(ts) FROM decisions")).scalar()
            assert last is not None and last <= taken_at + timedelta(minutes=1)
        finally:
            other.close()


def _count(engine: Engine, query: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(query)).scalar() or 0)
