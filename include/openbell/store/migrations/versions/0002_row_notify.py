"""Row notifications: every write to the session tables is announced with ``NOTIFY openbell_rows``.

The payload is JSON ``{table, op, session_date, key, row}``; ``row`` (the new row, or the old one on
delete) is left out when the message would not fit a NOTIFY (8000 bytes), and readers then fetch it
by ``key``. Bars are not announced.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CHANNEL = "openbell_rows"
KEYS: dict[str, tuple[str, ...]] = {
    "orders": ("client_order_id",),
    "fills": ("execution_id",),
    "positions": ("session_date", "symbol"),
    "equity": ("session_date", "ts"),
    "signals": ("session_date", "ts", "symbol"),
    "decisions": ("session_date", "seq"),
    "param_versions": ("id",),
    "step_runs": ("id",),
    "trading_sessions": ("session_date",),
}

FUNCTION = f"""
CREATE OR REPLACE FUNCTION openbell_notify_row() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    rec jsonb := to_jsonb(CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END);
    key jsonb := (SELECT jsonb_object_agg(k, rec -> k) FROM unnest(TG_ARGV) AS k);
    body jsonb := jsonb_build_object('table', TG_TABLE_NAME, 'op', lower(TG_OP),
                                     'session_date', rec -> 'session_date', 'key', key);
    msg text := (body || jsonb_build_object('row', rec))::text;
BEGIN
    IF octet_length(msg) > 7900 THEN
        msg := body::text;
    END IF;
    PERFORM pg_notify('{CHANNEL}', msg);
    RETURN NULL;
END
$$;
"""


def upgrade() -> None:
    op.execute(FUNCTION)
    for table, key in KEYS.items():
        args = ", ".join(f"'{column}'" for column in key)
        op.execute(
            f"CREATE TRIGGER openbell_notify AFTER INSERT OR UPDATE OR DELETE ON {table}"
            f" FOR EACH ROW EXECUTE FUNCTION openbell_notify_row({args})"
        )


def downgrade() -> None:
    for table in KEYS:
        op.execute(f"DROP TRIGGER IF EXISTS openbell_notify ON {table}")
    op.execute("DROP FUNCTION IF EXISTS openbell_notify_row()")
