"""A session's risk state may be set by openbell after the strategy failed too many minutes in a row
(``risk_cause`` ``strategy_failed``, with ``REDUCING``).

Going back down, such a cause becomes ``operator``: the older code resumes it plainly, as this code does.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_NAME = "ck_trading_sessions_risk_cause"


def upgrade() -> None:
    op.drop_constraint(op.f(_NAME), "trading_sessions", type_="check")
    op.create_check_constraint(
        op.f(_NAME), "trading_sessions", "risk_cause IN ('loss_stop', 'operator', 'strategy_failed')"
    )


def downgrade() -> None:
    op.execute("UPDATE trading_sessions SET risk_cause = 'operator' WHERE risk_cause = 'strategy_failed'")
    op.drop_constraint(op.f(_NAME), "trading_sessions", type_="check")
    op.create_check_constraint(op.f(_NAME), "trading_sessions", "risk_cause IN ('loss_stop', 'operator')")
