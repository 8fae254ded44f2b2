"""Bars record their price adjustment: ``raw`` (as traded that day; every bar stored before) or ``split``
(split-adjusted to the day of the download).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from openbell.store.migrations import in_shared_schema

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if not in_shared_schema():  # bars live in the shared schema only
        return
    op.add_column("bars", sa.Column("adjustment", sa.Text(), server_default="raw", nullable=False))
    op.create_check_constraint(op.f("ck_bars_adjustment"), "bars", "adjustment IN ('raw', 'split')")


def downgrade() -> None:
    if not in_shared_schema():
        return
    op.drop_constraint(op.f("ck_bars_adjustment"), "bars", type_="check")
    op.drop_column("bars", "adjustment")
