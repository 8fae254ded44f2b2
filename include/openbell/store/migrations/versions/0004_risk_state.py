"""Sessions carry their risk state (``ACTIVE``, ``REDUCING``: no new exposure, ``HALTED``: flat and no more
trading), who set it, why and when, and the broker's account equity at the session's open.

The row notifications of 0002 announce the new columns with the rest of the row.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("trading_sessions", sa.Column("risk_state", sa.Text(), server_default="ACTIVE", nullable=False))
    op.add_column("trading_sessions", sa.Column("risk_reason", sa.Text(), nullable=True))
    op.add_column("trading_sessions", sa.Column("risk_by", sa.Text(), nullable=True))
    op.add_column("trading_sessions", sa.Column("risk_changed_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("trading_sessions", sa.Column("open_equity", sa.Numeric(), nullable=True))
    op.create_check_constraint(
        op.f("ck_trading_sessions_risk_state"), "trading_sessions", "risk_state IN ('ACTIVE', 'REDUCING', 'HALTED')"
    )


def downgrade() -> None:
    op.drop_constraint(op.f("ck_trading_sessions_risk_state"), "trading_sessions", type_="check")
    for column in ("open_equity", "risk_changed_at", "risk_by", "risk_reason", "risk_state"):
        op.drop_column("trading_sessions", column)
