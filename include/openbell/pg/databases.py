"""Databases on any Postgres server, given a URL with rights to create them: create one if it is missing,
drop one with its clients, or a scratch database with a unique name, dropped on exit."""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg2
import psycopg2.errors
from psycopg2 import sql
from sqlalchemy.engine import make_url

from openbell.dberrors import unavailable

_DB_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def _connect_admin(url: str) -> Any:
    """A psycopg2 autocommit connection for the server of ``url`` (to the database in the URL)."""
    parsed = make_url(url)
    try:
        conn = psycopg2.connect(
            host=parsed.host or "127.0.0.1", port=parsed.port or 5432, user=parsed.username,
            password=parsed.password, dbname=parsed.database or "postgres", connect_timeout=5,
        )
    except psycopg2.OperationalError as exc:
        raise unavailable(url, exc) from None
    conn.autocommit = True
    return conn


def _check_name(name: str) -> None:
    if not _DB_NAME.match(name):
        raise ValueError(f"invalid database name {name!r}: use letters, digits and underscores")


def ensure_database(server_url: str, name: str) -> str:
    """Create database ``name`` on ``server_url``'s server if missing; return the URL of ``name``."""
    _check_name(name)
    conn = _connect_admin(server_url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cur.fetchone() is None:
                # another process may create it at the same moment
                with contextlib.suppress(psycopg2.errors.DuplicateDatabase, psycopg2.errors.UniqueViolation):
                    cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    finally:
        conn.close()
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


def drop_database(server_url: str, name: str) -> None:
    """Drop database ``name`` (disconnecting its clients) if it exists."""
    _check_name(name)
    conn = _connect_admin(server_url)
    try:
        with conn.cursor() as cur:
            cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    finally:
        conn.close()


@contextlib.contextmanager
def scratch_database(server_url: str, prefix: str = "t") -> Iterator[str]:
    """A new empty database with a unique name on ``server_url``'s server, dropped on exit."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    url = ensure_database(server_url, name)
    try:
        yield url
    finally:
        drop_database(server_url, name)
