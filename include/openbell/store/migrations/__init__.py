"""Alembic migrations of openbell's state database (run by ``openbell.store.db.upgrade``)."""
