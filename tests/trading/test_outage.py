"""A real Postgres restart under the live session's writer and fence: nothing queued is lost."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Connection, text

from dates import SESSION
from openbell.pg.databases import ensure_database
from openbell.pg.server import EmbeddedPostgres
from openbell.pg.throwaway import reachable_tempdir
from openbell.store.db import make_engine, upgrade
from openbell.store.events import record_event
from openbell.trading import SessionLock, Writer


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[EmbeddedPostgres]:
    """A server of this test's own, so it can be restarted."""
    if __import__("os").environ.get("OPENBELL_TEST_DATABASE_URL"):
        pytest.skip("restarts an embedded server; an external database is configured")
    root = reachable_tempdir(tmp_path, "openbell-restart-")
    server = EmbeddedPostgres(root / "pg", durable=False)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def _event(i: int):
    def write(conn: Connection) -> None:
        record_event(conn, SESSION, "tick", {"i": i})

    return write


def test_writes_queued_through_a_restart_all_land_and_the_fence_is_taken_again(own_server: EmbeddedPostgres) -> None:
    url = ensure_database(own_server.url(), "openbell")
    upgrade(url)
    engine = make_engine(url)
    lock = SessionLock(engine, SESSION, wait=0)
    lock.acquire()
    writer = Writer(engine, max_backoff=0.5)
    try:
        for i in range(20):
            writer.put(_event(i))
        assert writer.flush(30)
        own_server.stop()
        for i in range(20, 60):  # queued while Postgres is down
            writer.put(_event(i))
        assert not lock.verify()  # cannot tell while it is down; trading holds its orders meanwhile
        deadline = time.monotonic() + 30
        while writer.stats.retries == 0 and time.monotonic() < deadline:  # the writer met the outage
            time.sleep(0.05)
        assert writer.stats.retries > 0 and writer.backlog == 40
        own_server.start()
        assert writer.flush(60)
        assert lock.verify()
    finally:
        writer.close()
        lock.release()
    with engine.connect() as conn:
        seen = sorted(conn.execute(text("SELECT (payload->>'i')::int FROM events WHERE kind = 'tick'")).scalars())
    assert seen == list(range(60))
    assert writer.stats.dropped == 0


def test_an_engine_reconnects_on_its_own_after_a_restart(own_server: EmbeddedPostgres) -> None:
    engine = make_engine(ensure_database(own_server.url(), "openbell"))
    with engine.connect() as conn:  # leaves a pooled connection that the restart kills
        assert conn.execute(text("SELECT 1")).scalar() == 1
    own_server.stop()
    own_server.start()
    with engine.connect() as conn:  # the pool's pre-ping replaces the dead connection
        assert conn.execute(text("SELECT 1")).scalar() == 1
