"""Engines, schema migrations and the errors every caller of the state database may meet."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import psycopg2
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import ExceptionContext, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

from openbell.dberrors import DatabaseUnavailable, redact, unavailable
from openbell.jsonutil import json_default
from openbell.store.scope import DEFAULT_SCHEMA, SCHEMA_PREFIX, schema_of, scoped_url, shared_url

log = logging.getLogger(__name__)

__all__ = [
    "DatabaseUnavailable",
    "SchemaOutOfDate",
    "current_revision",
    "ensure_current",
    "head_revision",
    "json_dumps",
    "make_engine",
    "upgrade",
]

MIGRATIONS = Path(__file__).with_name("migrations")
VERSION_TABLE = "openbell_schema_version"
# pg_advisory_xact_lock key serializing concurrent upgrades (any fixed bigint; "openbell" in ASCII).
LOCK_KEY = 0x6F70656E62656C6C


class SchemaOutOfDate(RuntimeError):
    """The database schema is not at the revision this code expects."""


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def json_dumps(value: Any) -> str:
    """JSON for JSONB columns: dates as ISO text, Decimal as text, numpy values as Python values,
    NaN and infinities as null (JSON has no such numbers)."""
    try:
        return json.dumps(value, default=json_default, allow_nan=False, separators=(",", ":"))
    except ValueError:
        plain = json.loads(json.dumps(value, default=json_default, separators=(",", ":")))
        return json.dumps(_finite(plain), allow_nan=False, separators=(",", ":"))


def make_engine(url: str, *, pool_size: int = 5, max_overflow: int = 5) -> Engine:
    """An engine for ``url`` (psycopg2), checked by connecting once.

    Raises :class:`DatabaseUnavailable` (naming the URL without its password) when the server cannot be
    reached, now or on any later connect.
    """
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ValueError(f"not a database URL: {redact(url)}") from None
    if parsed.get_backend_name() != "postgresql":
        raise ValueError(f"openbell needs PostgreSQL, got {redact(url)}")
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg2")
    try:
        engine = create_engine(
            parsed,
            pool_pre_ping=True,
            pool_size=pool_size,
            max_overflow=max_overflow,
            pool_recycle=1800,
            pool_timeout=30,
            json_serializer=json_dumps,
            connect_args={"connect_timeout": 5, "application_name": "openbell"},
        )
    except NoSuchModuleError:
        raise ValueError(f"unsupported database driver in {redact(url)}") from None

    @event.listens_for(engine, "handle_error")
    def _connection_errors(ctx: ExceptionContext) -> BaseException | None:
        original = ctx.original_exception
        if ctx.is_pre_ping:  # the pool's check of a stale connection: let it reconnect
            return None
        if (ctx.connection is None or ctx.is_disconnect) and isinstance(original, psycopg2.OperationalError):
            return unavailable(url, original)
        return None

    try:
        with engine.connect():
            pass
    except DatabaseUnavailable:
        engine.dispose()
        raise
    except DBAPIError as exc:
        engine.dispose()
        raise unavailable(url, exc) from None
    return engine


def _alembic_config() -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def head_revision() -> str:
    """The newest migration shipped with this code."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError(f"no migrations found in {MIGRATIONS}")
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at (None for an empty database)."""
    from alembic.runtime.migration import MigrationContext

    opts = {"version_table": VERSION_TABLE, "version_table_schema": _version_schema(engine)}
    with engine.connect() as conn:
        heads = MigrationContext.configure(conn, opts=opts).get_current_heads()
    return heads[0] if heads else None


def _version_schema(engine: Engine) -> str | None:
    schema = schema_of(engine.url)
    return None if schema == DEFAULT_SCHEMA else schema


def upgrade(url: str) -> str:
    """Apply every migration up to head on ``url``; return the head revision. Safe to rerun.

    On the shared URL, every account schema already in the database is brought to head after the shared schema.
    On an account's URL (:func:`openbell.store.scope.scoped_url`), the shared schema first, then the account's,
    created if need be (without the shared tables)."""
    schema = schema_of(url)
    if schema != DEFAULT_SCHEMA:
        _upgrade_schema(shared_url(url))
        return _upgrade_schema(url)
    head = _upgrade_schema(url)
    for name in account_names(url):
        _upgrade_schema(scoped_url(url, name))
    return head


def account_names(url: str) -> list[str]:
    """The accounts whose schema exists in the database of ``url``, by name."""
    engine = make_engine(shared_url(url), pool_size=1, max_overflow=0)
    try:
        with engine.connect() as conn:
            schemas = conn.execute(text("SELECT nspname FROM pg_namespace WHERE starts_with(nspname, :p)"
                                        " ORDER BY nspname"), {"p": SCHEMA_PREFIX}).scalars().all()
    finally:
        engine.dispose()
    return [s.removeprefix(SCHEMA_PREFIX) for s in schemas]


def _upgrade_schema(url: str) -> str:
    from alembic import command

    schema = schema_of(url)
    engine = make_engine(url, pool_size=1, max_overflow=0)
    try:
        cfg = _alembic_config()
        with engine.begin() as conn:
            if schema != DEFAULT_SCHEMA:
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})
                conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
                conn.execute(text(f'SET LOCAL search_path TO "{schema}", public'))
            cfg.attributes["connection"] = conn
            cfg.attributes["version_table_schema"] = _version_schema(engine)
            command.upgrade(cfg, "head")
        revision = current_revision(engine)
    finally:
        engine.dispose()
    head = head_revision()
    if revision != head:
        raise SchemaOutOfDate(f"after upgrade {redact(url)} is at {revision}, expected {head}")
    log.info("openbell schema at %s on %s", head, redact(url))
    return head


def ensure_current(engine: Engine) -> None:
    """Raise :class:`SchemaOutOfDate` unless the database is at the head revision.

    An account's schema that was never created is created here, when the shared schema is at head: a new
    account needs no upgrade of its own (never is it served from the shared schema)."""
    revision = current_revision(engine)
    head = head_revision()
    url = engine.url.render_as_string(hide_password=False)
    if revision is None and schema_of(url) != DEFAULT_SCHEMA:
        shared = make_engine(shared_url(url), pool_size=1, max_overflow=0)
        try:
            ensure_current(shared)
        finally:
            shared.dispose()
        revision = _upgrade_schema(url)
    if revision != head:
        found = "an empty schema" if revision is None else f"revision {revision}"
        raise SchemaOutOfDate(
            f"openbell database {redact(url)} has {found}, this code needs {head}: run `openbell db upgrade`"
        )
