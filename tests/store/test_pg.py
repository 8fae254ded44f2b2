"""The embedded Postgres server and URL helpers."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from openbell.dberrors import DatabaseUnavailable, redact
from openbell.pg.server import EmbeddedPostgres
from openbell.pg.throwaway import reachable_tempdir
from openbell.pg.urls import resolve_urls
from openbell.store import db


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "postgresql+psycopg2://bob:s3cret@127.0.0.1:5433/openbell",
            "postgresql+psycopg2://bob:***@127.0.0.1:5433/openbell",
        ),
        ("postgresql://bob@db.local/x", "postgresql://bob@db.local/x"),
        ("postgresql://bob:p%40ss@h/x", "postgresql://bob:***@h/x"),
        ("garbage://u:pw@ not a url", "garbage://u:***@ not a url"),
    ],
)
def test_redact_hides_only_the_password(url: str, expected: str) -> None:
    assert redact(url) == expected


def _table_rows(url: str) -> list[tuple[int, str]]:
    engine = db.make_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text("SELECT id, note FROM kept ORDER BY id"))]
    finally:
        engine.dispose()


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    path = reachable_tempdir(tmp_path)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_embedded_server_initializes_restarts_and_keeps_data(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    server = EmbeddedPostgres(home / "pg", durable=False)
    assert not server.running
    server.start()
    try:
        assert server.running
        port = server.port
        url = server.url("postgres")
        parsed = make_url(url)
        assert (parsed.drivername, parsed.host, parsed.port) == ("postgresql+psycopg2", "127.0.0.1", port)
        assert server.password not in repr(server)
        pid = (server.pgdata / "postmaster.pid").read_text().split()[0]
        server.start()  # idempotent: the same postmaster keeps running
        assert (server.pgdata / "postmaster.pid").read_text().split()[0] == pid

        app_url = server.ensure_database("app")
        assert server.ensure_database("app") == app_url
        engine = db.make_engine(app_url)
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE kept (id int PRIMARY KEY, note text)"))
            conn.execute(text("INSERT INTO kept VALUES (1, 'before stop'), (2, 'second')"))
        engine.dispose()

        engine = db.make_engine(app_url)  # opened while the server runs, used after it stopped
        server.stop()
        assert not server.running
        with pytest.raises(DatabaseUnavailable, match=r"\*\*\*@127\.0\.0\.1"), engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
        with pytest.raises(DatabaseUnavailable) as info:
            db.make_engine(app_url)
        assert server.password not in str(info.value)
        assert f"127.0.0.1:{port}/app" in str(info.value)

        server.start()
        assert server.port == port  # the saved port is stable
        assert _table_rows(app_url) == [(1, "before stop"), (2, "second")]
        server.restart()
        assert _table_rows(app_url) == [(1, "before stop"), (2, "second")]

        # resolve_urls finds this very server under home/"pg" and creates both databases
        monkeypatch.delenv("OPENBELL_DATABASE_URL", raising=False)
        monkeypatch.delenv("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", raising=False)
        state, airflow = resolve_urls(home)
        assert make_url(state).database == "openbell"
        assert make_url(airflow).database == "airflow"
        assert make_url(state).port == make_url(airflow).port == port
        for name in (state, airflow):
            psycopg2.connect(make_url(name).render_as_string(hide_password=False).replace("+psycopg2", "")).close()
    finally:
        server.stop()
    assert not server.running


def test_resolve_urls_prefers_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENBELL_DATABASE_URL", "postgresql+psycopg2://a:x@127.0.0.1:1/state")
    monkeypatch.setenv("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "postgresql+psycopg2://b:y@127.0.0.1:1/af")
    assert resolve_urls(tmp_path / "home") == (
        "postgresql+psycopg2://a:x@127.0.0.1:1/state",
        "postgresql+psycopg2://b:y@127.0.0.1:1/af",
    )
    assert not (tmp_path / "home").exists()  # no embedded server was started


def test_bad_database_name_is_refused(pg_server_url: str) -> None:
    from openbell.pg.databases import ensure_database

    with pytest.raises(ValueError, match="invalid database name"):
        ensure_database(pg_server_url, "x; DROP DATABASE postgres")
