"""Engines, migrations and their errors."""

from __future__ import annotations

import socket

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.engine import make_url

from openbell.runtime import db_cli
from openbell.store import db
from openbell.store.models import Base


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_upgrade_from_empty_then_rerun_is_a_no_op(empty_db_url: str) -> None:
    engine = db.make_engine(empty_db_url)
    try:
        with pytest.raises(db.SchemaOutOfDate, match=r"run `openbell db upgrade`"):
            db.ensure_current(engine)

        head = db.upgrade(empty_db_url)
        assert head == db.head_revision() == "0008"
        db.ensure_current(engine)
        tables = set(inspect(engine).get_table_names())
        assert tables == {t.name for t in Base.metadata.sorted_tables} | {db.VERSION_TABLE}

        with engine.begin() as conn:
            conn.execute(text("INSERT INTO trading_sessions (session_date, phase) VALUES ('2025-03-03', 'trading')"))
        assert db.upgrade(empty_db_url) == head
        with engine.connect() as conn:
            assert conn.execute(text("SELECT phase FROM trading_sessions")).scalar_one() == "trading"
    finally:
        engine.dispose()


def test_migrations_create_exactly_the_models(state_url: str) -> None:
    engine = db.make_engine(state_url)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True, "version_table": db.VERSION_TABLE})
            assert compare_metadata(ctx, Base.metadata) == []
    finally:
        engine.dispose()


def test_unreachable_database_gives_a_clear_redacted_error() -> None:
    port = _closed_port()
    url = f"postgresql+psycopg2://trader:TopSecret42@127.0.0.1:{port}/openbell"
    for attempt in (db.make_engine, db.upgrade):
        with pytest.raises(db.DatabaseUnavailable) as info:
            attempt(url)
        message = str(info.value)
        assert "TopSecret42" not in message
        assert f"trader:***@127.0.0.1:{port}/openbell" in message


def test_wrong_password_is_unavailable_and_redacted(pg_server_url: str) -> None:
    url = make_url(pg_server_url).set(password="WrongPassw0rd").render_as_string(hide_password=False)
    with pytest.raises(db.DatabaseUnavailable) as info:
        db.make_engine(url)
    assert "WrongPassw0rd" not in str(info.value)
    assert "password authentication failed" in str(info.value)


@pytest.mark.parametrize("url", ["not a url at all", "sqlite:///tmp/x.db", "mysql://u:pw@127.0.0.1/x"])
def test_non_postgres_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError) as info:
        db.make_engine(url)
    assert ":pw@" not in str(info.value)


def test_cli_upgrade_current_and_url(
    empty_db_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    password = make_url(empty_db_url).password
    assert db_cli.main(["current", "--url", empty_db_url]) == 1
    assert "run `openbell db upgrade`" in capsys.readouterr().out
    assert db_cli.main(["upgrade", "--url", empty_db_url]) == 0
    out = capsys.readouterr().out
    assert "schema at 0008" in out
    assert password and password not in out
    assert db_cli.main(["current", "--url", empty_db_url]) == 0
    assert "up to date" in capsys.readouterr().out

    monkeypatch.setenv("OPENBELL_DATABASE_URL", empty_db_url)
    monkeypatch.setenv("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", empty_db_url)
    assert db_cli.main(["url"]) == 0
    printed = capsys.readouterr().out.strip()
    assert printed == make_url(empty_db_url).render_as_string(hide_password=True)

    dead = f"postgresql+psycopg2://u:Hidden99@127.0.0.1:{_closed_port()}/x"
    assert db_cli.main(["upgrade", "--url", dead]) == 1
    err = capsys.readouterr().err
    assert "cannot connect" in err
    assert "Hidden99" not in err
