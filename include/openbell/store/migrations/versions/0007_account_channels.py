"""Row notifications per account: a write to an account's schema is announced on ``openbell_rows_<schema>``,
so a reader of one account (its phase watch, the Trading view) never takes another account's rows for its
own. The shared schema keeps ``openbell_rows``, so a deployment without accounts sees no change.

Going back down restores 0002's function, which announces every schema's writes on ``openbell_rows``.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CHANNEL = "openbell_rows"  # openbell.store.scope.channel computes the same name in Python

FUNCTION = f"""
CREATE OR REPLACE FUNCTION openbell_notify_row() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    rec jsonb := to_jsonb(CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END);
    key jsonb := (SELECT jsonb_object_agg(k, rec -> k) FROM unnest(TG_ARGV) AS k);
    body jsonb := jsonb_build_object('table', TG_TABLE_NAME, 'op', lower(TG_OP),
                                     'session_date', rec -> 'session_date', 'key', key);
    msg text := (body || jsonb_build_object('row', rec))::text;
    chan text := CASE WHEN TG_TABLE_SCHEMA = 'public' THEN '{CHANNEL}' ELSE '{CHANNEL}_' || TG_TABLE_SCHEMA END;
BEGIN
    IF octet_length(msg) > 7900 THEN
        msg := body::text;
    END IF;
    PERFORM pg_notify(chan, msg);
    RETURN NULL;
END
$$;
"""


def upgrade() -> None:
    op.execute(FUNCTION)


def downgrade() -> None:
    op.execute(importlib.import_module("openbell.store.migrations.versions.0002_row_notify").FUNCTION)
