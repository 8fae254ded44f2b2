"""Alembic migrations of openbell's state database (run by ``openbell.store.db.upgrade``)."""

from alembic import op
from sqlalchemy import text

from openbell.store.scope import DEFAULT_SCHEMA


def in_shared_schema() -> bool:
    """True when migrating the shared schema (``public``), where the shared tables (bars) live; an account's
    schema (:mod:`openbell.store.scope`) holds only its own state."""
    return op.get_bind().execute(text("SELECT current_schema()")).scalar() == DEFAULT_SCHEMA
