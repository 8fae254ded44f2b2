"""Where ``openbell report`` reads a session from: ``--url``, ``$OPENBELL_DATABASE_URL``, else the embedded
Postgres (the day's rehearsal database ``openbell_YYYYMMDD`` when the demo rehearsed it, else ``openbell``);
and the refusals, each a :class:`ReportError` whose one-line message says what to do."""

from __future__ import annotations

import os
from contextlib import AbstractContextManager
from datetime import date
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text

from openbell.dberrors import redact
from openbell.report import build_report
from openbell.runtime.state_db import openbell_engine
from openbell.store.db import make_engine


class ReportError(Exception):
    """The report cannot be made; the message (one line) says what to do."""


class NothingRecorded(ReportError):
    """Nothing is recorded for the session where it was looked for."""


def rehearsal_database(session_date: date) -> str:
    """The database ``openbell demo --date D`` writes the rehearsal of ``D`` to."""
    return f"openbell_{session_date:%Y%m%d}"


def how_to_record(session_date: date | str) -> str:
    """How to get a recorded session of ``session_date``."""
    return (f"rehearse it with `openbell demo --date {session_date}` (`make demo ARGS=\"--date {session_date}\"`),"
            " trade it with the trading_day DAG, or pass --url")


def _databases(server_url: str) -> set[str]:
    engine = make_engine(server_url, pool_size=1, max_overflow=0)
    try:
        with engine.connect() as conn:
            return set(conn.execute(text("SELECT datname FROM pg_database WHERE NOT datistemplate")).scalars())
    finally:
        engine.dispose()


def state_url_for(session_date: date, home: Path) -> str:
    """Where ``session_date`` is reported from without ``--url``: ``$OPENBELL_DATABASE_URL``, else on the
    embedded server under ``home/pg`` the day's rehearsal database when it exists, else ``openbell``."""
    from openbell.pg.server import EmbeddedPostgres
    from openbell.pg.urls import STATE_DATABASE

    if os.environ.get("OPENBELL_DATABASE_URL"):
        return os.environ["OPENBELL_DATABASE_URL"]
    todo = f"rehearse the day with `openbell demo --date {session_date}` or pass --url"
    server = EmbeddedPostgres(home / "pg")
    if not (server.pgdata / "PG_VERSION").exists():
        raise ReportError(f"no embedded Postgres under {server.data_dir} and no OPENBELL_DATABASE_URL: {todo}")
    server.start()
    names = _databases(server.url())
    for name in (rehearsal_database(session_date), STATE_DATABASE):
        if name in names:
            return server.url(name)
    raise NothingRecorded(f"neither {rehearsal_database(session_date)} nor {STATE_DATABASE} exists on the embedded"
                          f" Postgres under {server.data_dir}: {todo}")


def _sessions(engine: Engine) -> list[date]:
    with engine.connect() as conn:
        return list(conn.execute(text(
            "SELECT DISTINCT session_date FROM step_runs ORDER BY session_date DESC LIMIT 5")).scalars())


def state_engine(url: str) -> AbstractContextManager[Engine]:
    """An engine on ``url``, which must hold openbell's schema; disposed on exit."""
    return openbell_engine(url, table="step_runs", refuse=ReportError,
                           hint="run `openbell db upgrade --url URL` or pass --url of the database that recorded"
                                " the session")


def load_report(url: str, session_date: date) -> dict[str, Any]:
    """The report of ``session_date`` from ``url``; :class:`ReportError` when the database has no openbell
    schema, :class:`NothingRecorded` when nothing is recorded for that session."""
    with state_engine(url) as engine:
        report = build_report(engine, session_date)
        if not (report["steps"] or report["orders"] or report["fills"] or "equity_start" in report["pnl"]):
            held = ", ".join(d.isoformat() for d in _sessions(engine)) or "none"
            raise NothingRecorded(f"nothing recorded for session {session_date} in {redact(url)} (sessions there:"
                                  f" {held}): {how_to_record(session_date)}")
        return report
