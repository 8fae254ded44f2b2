"""Shared fixtures: one real PostgreSQL server per test session, a fresh migrated database per test."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from clock_endpoint import ClockEndpoint

os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")


@pytest.fixture(scope="session")
def pg_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server URL: ``$OPENBELL_TEST_DATABASE_URL``, else an embedded PostgreSQL for this session."""
    from openbell.pg import ephemeral_server

    with ephemeral_server(tmp_path_factory.mktemp("pg")) as url:
        yield url


@pytest.fixture
def state_url(pg_server_url: str) -> Iterator[str]:
    """A fresh database with openbell's schema at head, dropped after the test."""
    from openbell.pg import scratch_database
    from openbell.store.db import upgrade

    with scratch_database(pg_server_url) as url:
        upgrade(url)
        yield url


@pytest.fixture
def endpoint() -> Iterator[ClockEndpoint]:
    """A loopback market-clock endpoint (see ``clock_endpoint.py``)."""
    ep = ClockEndpoint()
    yield ep
    ep.close()
