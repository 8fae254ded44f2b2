"""Sessions record who set their risk state (``risk_cause``: ``loss_stop`` for the daily loss stop,
``operator`` for ``trading_control``, null while never set) and the extra loss budget granted today by
resumes after a loss stop (``extra_loss``, dollars, cumulative; 0 by default).

Rows stored before carry no cause: a state set by ``openbell`` (the only writer of the loss stop) is marked
``loss_stop``, one set by anyone else ``operator``, so a session stopped by the loss stop before the upgrade
still needs an extra loss budget to resume. The row notifications of 0002 announce the new columns.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("trading_sessions", sa.Column("risk_cause", sa.Text(), nullable=True))
    op.add_column("trading_sessions", sa.Column("extra_loss", sa.Numeric(), server_default="0", nullable=False))
    op.create_check_constraint(
        op.f("ck_trading_sessions_risk_cause"), "trading_sessions", "risk_cause IN ('loss_stop', 'operator')"
    )
    op.create_check_constraint(op.f("ck_trading_sessions_extra_loss"), "trading_sessions", "extra_loss >= 0")
    op.execute("UPDATE trading_sessions SET risk_cause = CASE WHEN risk_by = 'openbell' THEN 'loss_stop'"
               " ELSE 'operator' END WHERE risk_by IS NOT NULL")


def downgrade() -> None:
    op.drop_constraint(op.f("ck_trading_sessions_extra_loss"), "trading_sessions", type_="check")
    op.drop_constraint(op.f("ck_trading_sessions_risk_cause"), "trading_sessions", type_="check")
    op.drop_column("trading_sessions", "extra_loss")
    op.drop_column("trading_sessions", "risk_cause")
