"""Alembic environment for openbell's state database (run through ``openbell.store.db.upgrade``)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from openbell.store.db import LOCK_KEY, VERSION_TABLE
from openbell.store.models import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    """Migrate on the connection handed over in ``config.attributes["connection"]``."""
    connection = config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("openbell migrations run through openbell.store.db.upgrade(url)")
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        version_table=VERSION_TABLE,
        version_table_schema=config.attributes.get("version_table_schema"),
        transaction_per_migration=False,
        compare_type=True,
    )
    with context.begin_transaction():
        # Two processes upgrading at once: the second waits, then finds the schema at head.
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})
        context.run_migrations()


if context.is_offline_mode():
    raise RuntimeError("openbell migrations run online only")
run_migrations_online()
