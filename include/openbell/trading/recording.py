"""The live session's Postgres records: rows built for the writer's thread, queued on the loop.

Nothing here touches Postgres on the event loop: a write is a function of a connection, kept on the
loop for ``WRITE_DELAY`` (the orders of a minute leave first) and then handed to the :class:`Writer`,
which runs it on its own thread. Every write is idempotent (upserts, ON CONFLICT), since the writer
retries a batch through a Postgres outage.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection, text

from openbell.broker import book
from openbell.broker.ids import client_order_id
from openbell.broker.journal import event
from openbell.strategy import Bar
from openbell.trading.minutes import MINUTE
from openbell.trading.portfolio import OrderIntent
from openbell.trading.threads import Threads
from openbell.trading.writer import Write, Writer

WRITE_DELAY = 0.02  # wall seconds a write waits on the loop before going to the writer

_INSERT_BAR = text(
    "INSERT INTO bars (symbol, ts, open, high, low, close, volume, trade_count, vwap, source)"
    " VALUES (:symbol, :ts, :open, :high, :low, :close, :volume, :trade_count, :vwap, :source)"
    " ON CONFLICT (symbol, ts) DO UPDATE SET open = EXCLUDED.open, high = EXCLUDED.high, low = EXCLUDED.low,"
    " close = EXCLUDED.close, volume = EXCLUDED.volume, trade_count = EXCLUDED.trade_count,"
    " vwap = EXCLUDED.vwap, source = EXCLUDED.source, ingested_at = now()"
)
_INSERT_DECISION = text(
    "INSERT INTO decisions (session_date, seq, ts, targets, param_version_id)"
    " VALUES (:d, :seq, :ts, CAST(:targets AS jsonb), :v) ON CONFLICT DO NOTHING"
)
_UPSERT_SIGNAL = text(
    "INSERT INTO signals (session_date, ts, symbol, score, weight)"
    " VALUES (:d, :ts, :s, :score, :w) ON CONFLICT (session_date, ts, symbol)"
    " DO UPDATE SET score = EXCLUDED.score, weight = EXCLUDED.weight"
)
_UPSERT_EQUITY = text(
    "INSERT INTO equity (session_date, ts, equity, cash, gross_exposure)"
    " VALUES (:d, :ts, :e, :c, :g) ON CONFLICT (session_date, ts)"
    " DO UPDATE SET equity = EXCLUDED.equity, cash = EXCLUDED.cash,"
    " gross_exposure = EXCLUDED.gross_exposure"
)
_RESENT_QTY = text("UPDATE orders SET qty = :q WHERE client_order_id = :c")
_NOT_SENT = text(
    "UPDATE orders SET status = 'not_sent', updated_at = now() WHERE client_order_id = :c"
    " AND NOT (status = ANY(:final))"
)


def _num(value: Any) -> float | None:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


class Recorder:
    """Queues the session's writes (``write``) and builds its rows: bars, decisions, signals, equity, orders."""

    writer: Writer  # attached when the session runs

    def __init__(self, threads: Threads, session_date: date, universe: Sequence[str], *,
                 account: str | None = None) -> None:
        self._threads = threads
        self.d = session_date
        self.account = account  # the account traded (LoopContext.account): its order ids
        self._universe = universe
        self._pending: list[Write] = []
        self._flush_due = False

    def write(self, fn: Write) -> None:
        """Queue a write for the writer, handed over a moment later: the writer thread waking up
        (for the first write after its idle spell) takes the GIL from orders going out."""
        self._pending.append(fn)
        if not self._flush_due:
            self._flush_due = True
            self._threads.loop.call_later(WRITE_DELAY, self.flush)

    def flush(self) -> None:
        """Hand every queued write to the writer now."""
        pending, self._pending, self._flush_due = self._pending, [], False
        for fn in pending:
            self.writer.put(fn)

    def event(self, kind: str, payload: dict[str, Any]) -> None:
        """Queue one journal event of the session."""
        d = self.d
        self.write(lambda conn: event(conn, d, kind, payload))

    def order(self, row: book.OrderRow) -> None:
        """Queue an upsert of one order row."""
        self.write(lambda conn: book.upsert_order(conn, row))

    def not_sent(self, coid: str) -> None:
        """Queue: an order found never sent, not wanted again, ends as ``not_sent`` (unless final)."""
        d = self.d

        def write(conn: Connection) -> None:
            conn.execute(_NOT_SENT, {"c": coid, "final": list(book.FINAL_STATUSES)})
            event(conn, d, "order_not_sent", {"client_order_id": coid})

        self.write(write)

    def bar(self, bar: Bar, source: str, trade_count: Any, vwap: Any) -> None:
        """Queue an upsert of one bar (a late or corrected bar replaces the stored one)."""
        params = {
            "symbol": bar.symbol,
            "ts": bar.ts,
            "open": bar.open,
            "high": bar.high,
            "low": bar.low,
            "close": bar.close,
            "volume": bar.volume,
            "trade_count": int(trade_count) if trade_count is not None else None,
            "vwap": float(vwap) if vwap is not None else None,
            "source": source,
        }
        self.write(lambda conn: conn.execute(_INSERT_BAR, params))

    def decision(
        self,
        t: datetime,
        seq: int,
        targets: dict[str, float],
        weights: dict[str, float],
        notes: list[str],
        orders: list[tuple[str, OrderIntent]],
        equity: float,
        version: int | None,
        scores: dict[str, float],
        cash: float,
        gross: float,
    ) -> None:
        """Queue one decision: its targets and notes, the signals, the equity after the minute, its orders."""
        d, universe, account = self.d, self._universe, self.account

        def write(conn: Connection) -> None:  # the rows are built here, on the writer's thread
            from openbell.store.db import json_dumps

            rows = [
                {"d": d, "ts": t, "s": s, "score": _num(scores.get(s)), "w": _num(weights.get(s, 0.0))}
                for s in universe
            ]
            rows_out = [
                book.OrderRow(
                    client_order_id=coid,
                    session_date=d,
                    symbol=i.symbol,
                    side=i.side,
                    qty=i.qty,
                    status="pending_new",
                    decision_seq=seq,
                    reason=f"target weight {i.target_weight:.4f}",
                )
                for coid, i in orders
            ]
            payload = {
                "raw": {k: _num(v) for k, v in targets.items()},
                "weights": {k: _num(v) for k, v in weights.items()},
                "notes": notes,
            }
            conn.execute(_INSERT_DECISION, {"d": d, "seq": seq, "ts": t, "targets": json_dumps(payload), "v": version})
            conn.execute(_UPSERT_SIGNAL, rows)
            conn.execute(_UPSERT_EQUITY, {"d": d, "ts": t + MINUTE, "e": equity, "c": cash, "g": gross})
            for row in rows_out:
                book.upsert_order(conn, row)
                if row.client_order_id != client_order_id(d, seq, row.symbol, account):
                    # a resent order keeps its first decision and takes this one's quantity
                    conn.execute(_RESENT_QTY, {"q": row.qty, "c": row.client_order_id})

        self.write(write)
