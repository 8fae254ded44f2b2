"""Initial schema: bars, step ledger, sessions, orders, fills, positions, parameters, decisions,
signals, equity and the event journal.

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from openbell.store.migrations import in_shared_schema

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if in_shared_schema():  # bars are shared: an account's schema has none
        op.create_table(
            "bars",
            sa.Column("symbol", sa.Text(), nullable=False),
            sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
            sa.Column("open", sa.Double(), nullable=False),
            sa.Column("high", sa.Double(), nullable=False),
            sa.Column("low", sa.Double(), nullable=False),
            sa.Column("close", sa.Double(), nullable=False),
            sa.Column("volume", sa.Double(), nullable=False),
            sa.Column("trade_count", sa.Integer(), nullable=True),
            sa.Column("vwap", sa.Double(), nullable=True),
            sa.Column("source", sa.Text(), nullable=False),
            sa.Column("ingested_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
            sa.PrimaryKeyConstraint("symbol", "ts", name=op.f("pk_bars")),
        )
    op.create_table(
        "decisions",
        sa.Column("session_date", sa.Date(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("targets", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("param_version_id", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("session_date", "seq", name=op.f("pk_decisions")),
    )
    op.create_table(
        "equity",
        sa.Column("session_date", sa.Date(), nullable=False),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("equity", sa.Double(), nullable=False),
        sa.Column("cash", sa.Double(), nullable=True),
        sa.Column("gross_exposure", sa.Double(), nullable=True),
        sa.PrimaryKeyConstraint("session_date", "ts", name=op.f("pk_equity")),
    )
    op.create_table(
        "events",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("session_date", sa.Date(), nullable=False),
        sa.Column("ts", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), server_default="{}", nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
    )
    op.create_index(op.f("ix_events_session_date_ts"), "events", ["session_date", "ts"], unique=False)
    op.create_table(
        "fills",
        sa.Column("execution_id", sa.Text(), nullable=False),
        sa.Column("client_order_id", sa.Text(), nullable=True),
        sa.Column("session_date", sa.Date(), nullable=False),
        sa.Column("symbol", sa.Text(), nullable=False),
        sa.Column("side", sa.Text(), nullable=False),
        sa.Column("qty", sa.Numeric(), nullable=False),
        sa.Column("price", sa.Numeric(), nullable=False),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("side IN ('buy', 'sell')", name=op.f("ck_fills_side")),
        sa.PrimaryKeyConstraint("execution_id", name=op.f("pk_fills")),
    )
    op.create_index(op.f("ix_fills_client_order_id"), "fills", ["client_order_id"], unique=False)
    op.create_index(op.f("ix_fills_session_date_symbol"), "fills", ["session_date", "symbol"], unique=False)
    op.create_table(
        "orders",
        sa.Column("client_order_id", sa.Text(), nullable=False),
        sa.Column("session_date", sa.Date(), nullable=False),
        sa.Column("symbol", sa.Text(), nullable=False),
        sa.Column("side", sa.Text(), nullable=False),
        sa.Column("qty", sa.Numeric(), nullable=False),
        sa.Column("notional", sa.Numeric(), nullable=True),
        sa.Column("decision_seq", sa.Integer(), nullable=True),
        sa.Column("broker_order_id", sa.Text(), nullable=True),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("filled_qty", sa.Numeric(), server_default="0", nullable=False),
        sa.Column("filled_avg_price", sa.Numeric(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("reject_reason", sa.Text(), nullable=True),
        sa.Column("origin", sa.Text(), server_default="strategy", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("origin IN ('strategy', 'adopted', 'liquidation')", name=op.f("ck_orders_origin")),
        sa.CheckConstraint("side IN ('buy', 'sell')", name=op.f("ck_orders_side")),
        sa.PrimaryKeyConstraint("client_order_id", name=op.f("pk_orders")),
    )
    op.create_index(op.f("ix_orders_broker_order_id"), "orders", ["broker_order_id"], unique=False)
    op.create_index(op.f("ix_orders_session_date_symbol"), "orders", ["session_date", "symbol"], unique=False)
    op.create_table(
        "param_versions",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("strategy", sa.Text(), nullable=False),
        sa.Column("params", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("session_date", sa.Date(), nullable=True),
        sa.Column("score", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(
            "source IN ('default', 'optimizer', 'manual')", name=op.f("ck_param_versions_source")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_param_versions")),
    )
    op.create_index(op.f("ix_param_versions_strategy_id"), "param_versions", ["strategy", "id"], unique=False)
    op.create_table(
        "positions",
        sa.Column("session_date", sa.Date(), nullable=False),
        sa.Column("symbol", sa.Text(), nullable=False),
        sa.Column("qty", sa.Numeric(), nullable=False),
        sa.Column("avg_entry_price", sa.Numeric(), nullable=True),
        sa.Column("origin", sa.Text(), server_default="strategy", nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("origin IN ('strategy', 'adopted')", name=op.f("ck_positions_origin")),
        sa.PrimaryKeyConstraint("session_date", "symbol", name=op.f("pk_positions")),
    )
    op.create_table(
        "signals",
        sa.Column("session_date", sa.Date(), nullable=False),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("symbol", sa.Text(), nullable=False),
        sa.Column("score", sa.Double(), nullable=True),
        sa.Column("weight", sa.Double(), nullable=True),
        sa.PrimaryKeyConstraint("session_date", "ts", "symbol", name=op.f("pk_signals")),
    )
    op.create_table(
        "step_runs",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("session_date", sa.Date(), nullable=False),
        sa.Column("step", sa.Text(), nullable=False),
        sa.Column("run_id", sa.Text(), server_default="", nullable=False),
        sa.Column("attempt", sa.Integer(), server_default="1", nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("summary", postgresql.JSONB(astext_type=sa.Text()), server_default="{}", nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "status IN ('running', 'success', 'failed', 'skipped')", name=op.f("ck_step_runs_status")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_step_runs")),
    )
    op.create_index(
        op.f("ix_step_runs_session_date_step"), "step_runs", ["session_date", "step"], unique=False
    )
    op.create_table(
        "trading_sessions",
        sa.Column("session_date", sa.Date(), nullable=False),
        sa.Column("phase", sa.Text(), nullable=False),
        sa.Column("open_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("close_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(
            "phase IN ('pre_open', 'trading', 'liquidating', 'closed')",
            name=op.f("ck_trading_sessions_phase"),
        ),
        sa.PrimaryKeyConstraint("session_date", name=op.f("pk_trading_sessions")),
    )


def downgrade() -> None:
    op.drop_table("trading_sessions")
    op.drop_index(op.f("ix_step_runs_session_date_step"), table_name="step_runs")
    op.drop_table("step_runs")
    op.drop_table("signals")
    op.drop_table("positions")
    op.drop_index(op.f("ix_param_versions_strategy_id"), table_name="param_versions")
    op.drop_table("param_versions")
    op.drop_index(op.f("ix_orders_session_date_symbol"), table_name="orders")
    op.drop_index(op.f("ix_orders_broker_order_id"), table_name="orders")
    op.drop_table("orders")
    op.drop_index(op.f("ix_fills_session_date_symbol"), table_name="fills")
    op.drop_index(op.f("ix_fills_client_order_id"), table_name="fills")
    op.drop_table("fills")
    op.drop_index(op.f("ix_events_session_date_ts"), table_name="events")
    op.drop_table("events")
    op.drop_table("equity")
    op.drop_table("decisions")
    if in_shared_schema():
        op.drop_table("bars")
