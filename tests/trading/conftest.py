"""Real Postgres (one server per test session, a fresh database per test) and a real simulator."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import date

import psycopg2
import pytest
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from openbell.pg import drop_database
from openbell.store import db

SESSION = date(2025, 11, 20)  # a full NYSE session (Thursday)


def _admin(server_url: str) -> psycopg2.extensions.connection:
    u = make_url(server_url)
    conn = psycopg2.connect(host=u.host, port=u.port, user=u.username, password=u.password,
                            dbname=u.database or "postgres")
    conn.autocommit = True
    return conn


@pytest.fixture(scope="session")
def template_db(pg_server_url: str) -> Iterator[str]:
    """A database migrated to head once; each test gets a copy of it."""
    name = f"trading_tmpl_{uuid.uuid4().hex[:8]}"
    conn = _admin(pg_server_url)
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    db.upgrade(make_url(pg_server_url).set(database=name).render_as_string(hide_password=False))
    engine = db.make_engine(make_url(pg_server_url).set(database=name).render_as_string(hide_password=False))
    engine.dispose()  # no connection may stay open on a template
    yield name
    conn.close()
    drop_database(pg_server_url, name)


@pytest.fixture
def engine(pg_server_url: str, template_db: str) -> Iterator[Engine]:
    """An engine on a fresh database with openbell's schema."""
    name = f"trading_{uuid.uuid4().hex[:10]}"
    conn = _admin(pg_server_url)
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
    conn.close()
    eng = db.make_engine(make_url(pg_server_url).set(database=name).render_as_string(hide_password=False))
    yield eng
    eng.dispose()
    drop_database(pg_server_url, name)
