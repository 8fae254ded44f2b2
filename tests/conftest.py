"""Shared fixtures: one real PostgreSQL server per test session, a fresh migrated database per test."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from clock_endpoint import ClockEndpoint

os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")

# Strategy plug-ins outside the package, importable the way Airflow's workers import them from PYTHONPATH
STRATEGIES = Path(__file__).resolve().parent / "strategies"
sys.path.insert(0, str(STRATEGIES))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked ``long`` first: ``make test`` runs tests in parallel lanes (pytest-xdist), which end together."""
    items.sort(key=lambda item: item.get_closest_marker("long") is None)


@pytest.fixture(scope="session")
def pg_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server URL: ``$OPENBELL_TEST_DATABASE_URL``, else an embedded PostgreSQL for this session."""
    from openbell.pg.throwaway import ephemeral_server

    with ephemeral_server(tmp_path_factory.mktemp("pg")) as url:
        yield url


@pytest.fixture(scope="session")
def head_template(pg_server_url: str) -> Iterator[str]:
    """The name of a database migrated to head once per test session, which ``state_url`` copies."""
    from sqlalchemy.engine import make_url

    from openbell.pg.databases import scratch_database
    from openbell.store.db import make_engine, upgrade

    with scratch_database(pg_server_url, prefix="head") as url:
        upgrade(url)
        make_engine(url).dispose()  # no connection may stay open on a template
        yield str(make_url(url).database)


@pytest.fixture
def state_url(pg_server_url: str, head_template: str) -> Iterator[str]:
    """A fresh database with openbell's schema at head (a copy of ``head_template``), dropped after the test."""
    import psycopg2
    from psycopg2 import sql
    from sqlalchemy.engine import make_url

    from openbell.pg.databases import drop_database

    name = f"t_{uuid.uuid4().hex[:12]}"
    u = make_url(pg_server_url)
    conn = psycopg2.connect(host=u.host or "127.0.0.1", port=u.port or 5432, user=u.username, password=u.password,
                            dbname=u.database or "postgres", connect_timeout=5)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name),
                                                                        sql.Identifier(head_template)))
    finally:
        conn.close()
    try:
        yield u.set(database=name).render_as_string(hide_password=False)
    finally:
        drop_database(pg_server_url, name)


@pytest.fixture
def engine(state_url: str) -> Iterator[Engine]:
    """An engine on ``state_url``'s database, disposed after the test."""
    from openbell.store.db import make_engine

    eng = make_engine(state_url)
    yield eng
    eng.dispose()


@pytest.fixture
def endpoint() -> Iterator[ClockEndpoint]:
    """A loopback market-clock endpoint (see ``clock_endpoint.py``)."""
    ep = ClockEndpoint()
    yield ep
    ep.close()
