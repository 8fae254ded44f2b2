"""An empty database for the migrations' own tests (``state_url`` and ``engine`` are in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from openbell.pg.databases import scratch_database


@pytest.fixture
def empty_db_url(pg_server_url: str) -> Iterator[str]:
    """A new, empty database, dropped after the test."""
    with scratch_database(pg_server_url, prefix="store_empty") as url:
        yield url
