"""The simulator's private broker state in SQLite, one transaction per change."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import orjson


def _dumps(doc: Any) -> str:
    return orjson.dumps(doc).decode()


SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS orders (
    id TEXT PRIMARY KEY, seq INTEGER NOT NULL, client_order_id TEXT NOT NULL UNIQUE, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS positions (symbol TEXT PRIMARY KEY, doc TEXT NOT NULL);
"""


class StateStore:
    """Account, orders and positions of the simulated broker in ``<data_dir>/broker.sqlite``."""

    def __init__(self, data_dir: str | Path) -> None:
        path = Path(data_dir)
        path.mkdir(parents=True, exist_ok=True)
        self.path = path / "broker.sqlite"
        self.conn = sqlite3.connect(self.path, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.executescript(SCHEMA)

    def get_meta(self, key: str) -> Any:
        row = self.conn.execute("SELECT v FROM meta WHERE k = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def load_orders(self) -> list[dict[str, Any]]:
        rows = self.conn.execute("SELECT doc FROM orders ORDER BY seq").fetchall()
        return [json.loads(r[0]) for r in rows]

    def load_positions(self) -> dict[str, dict[str, Any]]:
        rows = self.conn.execute("SELECT symbol, doc FROM positions").fetchall()
        return {r[0]: json.loads(r[1]) for r in rows}

    def save(
        self,
        *,
        meta: dict[str, Any] | None = None,
        orders: list[dict[str, Any]] = (),  # type: ignore[assignment]
        positions: dict[str, dict[str, Any] | None] | None = None,
    ) -> None:
        """Write the given changes atomically (``None`` as a position deletes it)."""
        c = self.conn
        c.execute("BEGIN IMMEDIATE")
        try:
            for k, v in (meta or {}).items():
                c.execute("INSERT OR REPLACE INTO meta (k, v) VALUES (?, ?)", (k, _dumps(v)))
            for o in orders:
                c.execute(
                    "INSERT OR REPLACE INTO orders (id, seq, client_order_id, doc) VALUES (?, ?, ?, ?)",
                    (o["id"], o["_seq"], o["client_order_id"], _dumps(o)),
                )
            for sym, doc in (positions or {}).items():
                if doc is None:
                    c.execute("DELETE FROM positions WHERE symbol = ?", (sym,))
                else:
                    c.execute("INSERT OR REPLACE INTO positions (symbol, doc) VALUES (?, ?)", (sym, _dumps(doc)))
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self.conn.close()
