"""One Postgres per test session (embedded, or the server of $OPENBELL_TEST_DATABASE_URL)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, text

from openbell.pg import scratch_database
from openbell.store import db
from openbell.store.models import Base


@pytest.fixture
def empty_db_url(pg_server_url: str) -> Iterator[str]:
    """A new, empty database, dropped after the test."""
    with scratch_database(pg_server_url, prefix="store_empty") as url:
        yield url


@pytest.fixture(scope="session")
def store_url(pg_server_url: str) -> Iterator[str]:
    """A database upgraded to head once for the session."""
    with scratch_database(pg_server_url, prefix="store") as url:
        db.upgrade(url)
        yield url


@pytest.fixture
def engine(store_url: str) -> Iterator[Engine]:
    """An engine on the upgraded database, every openbell table emptied first."""
    eng = db.make_engine(store_url)
    names = ", ".join(t.name for t in Base.metadata.sorted_tables)
    with eng.begin() as conn:
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY"))
    yield eng
    eng.dispose()
