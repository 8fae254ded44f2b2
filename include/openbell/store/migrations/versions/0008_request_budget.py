"""The Trading API request budget of each API key, shared by every machine that uses the key: one row per key
(a hash of the key and the Trading API's URL, never the key id) in the shared schema only.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-08
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from openbell.store.migrations import in_shared_schema

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if not in_shared_schema():  # one budget per key, whichever account uses it
        return
    op.create_table(
        "request_budget",
        sa.Column("budget_key", sa.Text(), nullable=False),
        sa.Column("blocked_until", sa.Double(), server_default="0", nullable=False),
        sa.Column("stamps", postgresql.ARRAY(sa.Double()), server_default="{}", nullable=False),
        sa.Column("checked_at", sa.Double(), server_default="0", nullable=False),
        sa.Column("granted", sa.Boolean(), server_default="false", nullable=False),
        sa.PrimaryKeyConstraint("budget_key", name=op.f("pk_request_budget")),
    )


def downgrade() -> None:
    if not in_shared_schema():
        return
    op.drop_table("request_budget")
