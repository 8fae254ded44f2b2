"""Postgres side of the broker: the orders, fills and position-book rows openbell keeps.

Every function takes an open SQLAlchemy ``Connection`` (the caller owns the transaction) and is
idempotent, so the live session's writer can retry a batch after a Postgres outage.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection, text

# "not_sent" is openbell's own: an order whose submission had an unknown outcome and that the broker
# still did not know after a grace period; it counts as never sent.
FINAL_STATUSES = frozenset(
    {"filled", "canceled", "expired", "rejected", "replaced", "done_for_day", "stopped", "not_sent"}
)


@dataclass(frozen=True)
class OrderRow:
    """One row of ``orders`` as openbell writes it."""

    client_order_id: str
    session_date: date
    symbol: str
    side: str
    qty: float | None
    status: str
    decision_seq: int | None = None
    notional: float | None = None
    broker_order_id: str | None = None
    filled_qty: float | None = None
    filled_avg_price: float | None = None
    reason: str | None = None
    reject_reason: str | None = None
    origin: str = "strategy"


_UPSERT_ORDER = text(
    """
    INSERT INTO orders (client_order_id, session_date, symbol, side, qty, notional, decision_seq,
                        broker_order_id, status, filled_qty, filled_avg_price, reason, reject_reason,
                        origin, created_at, updated_at)
    VALUES (:client_order_id, :session_date, :symbol, :side, COALESCE(CAST(:qty AS numeric), 0),
            :notional, :decision_seq, :broker_order_id, :status, COALESCE(CAST(:filled_qty AS numeric), 0),
            :filled_avg_price, :reason, :reject_reason, :origin, now(), now())
    ON CONFLICT (client_order_id) DO UPDATE SET
        broker_order_id = COALESCE(EXCLUDED.broker_order_id, orders.broker_order_id),
        status = CASE WHEN orders.status = ANY(:final) AND NOT (EXCLUDED.status = ANY(:final))
                      THEN orders.status ELSE EXCLUDED.status END,
        filled_qty = GREATEST(COALESCE(EXCLUDED.filled_qty, 0), COALESCE(orders.filled_qty, 0)),
        filled_avg_price = COALESCE(EXCLUDED.filled_avg_price, orders.filled_avg_price),
        reject_reason = COALESCE(EXCLUDED.reject_reason, orders.reject_reason),
        qty = COALESCE(NULLIF(orders.qty, 0), EXCLUDED.qty),
        notional = COALESCE(orders.notional, EXCLUDED.notional),
        decision_seq = COALESCE(orders.decision_seq, EXCLUDED.decision_seq),
        reason = COALESCE(orders.reason, EXCLUDED.reason),
        updated_at = now()
    """
)


def upsert_order(conn: Connection, row: OrderRow) -> None:
    """Insert an order or move it forward (a final status is never overwritten by a non-final one). A qty
    not known (a notional order as the broker reports it) is stored as 0 until a row with the estimate comes."""
    params: dict[str, Any] = {**row.__dict__, "final": list(FINAL_STATUSES)}
    conn.execute(_UPSERT_ORDER, params)


_INSERT_FILL = text(
    """
    INSERT INTO fills (execution_id, client_order_id, session_date, symbol, side, qty, price, ts)
    VALUES (:execution_id, :client_order_id, :session_date, :symbol, :side, :qty, :price, :ts)
    ON CONFLICT (execution_id) DO NOTHING
    """
)


def insert_fill(
    conn: Connection,
    *,
    execution_id: str,
    client_order_id: str,
    session_date: date,
    symbol: str,
    side: str,
    qty: float,
    price: float,
    ts: datetime,
) -> bool:
    """Store a fill once; False when this execution id was already recorded."""
    result = conn.execute(
        _INSERT_FILL,
        {
            "execution_id": execution_id,
            "client_order_id": client_order_id,
            "session_date": session_date,
            "symbol": symbol,
            "side": side,
            "qty": qty,
            "price": price,
            "ts": ts,
        },
    )
    return bool(result.rowcount)


def recorded_fills(conn: Connection, client_order_id: str) -> tuple[float, float, float]:
    """(cumulative filled qty on record, quantity of its recorded fills, their cost) for one order.

    The order's ``filled_qty`` only ever grows (see :func:`upsert_order`), so it is the most the
    broker has reported filled, whatever order its updates arrived in.
    """
    row = conn.execute(
        text(
            "SELECT COALESCE((SELECT filled_qty FROM orders WHERE client_order_id = :c), 0),"
            " COALESCE(sum(qty), 0), COALESCE(sum(qty * price), 0)"
            " FROM fills WHERE client_order_id = :c"
        ),
        {"c": client_order_id},
    ).one()
    return float(row[0]), float(row[1]), float(row[2])


def apply_fill_to_book(
    conn: Connection, session_date: date, symbol: str, signed_qty: float, price: float
) -> float:
    """Move the position book by one new fill; returns the new quantity."""
    row = conn.execute(
        text(
            "SELECT qty, avg_entry_price, origin FROM positions WHERE session_date = :d AND symbol = :s "
            "FOR UPDATE"
        ),
        {"d": session_date, "s": symbol},
    ).first()
    old_qty = float(row[0]) if row else 0.0
    old_avg = float(row[1]) if row and row[1] is not None else 0.0
    origin = row[2] if row else "strategy"
    new_qty = old_qty + signed_qty
    if abs(new_qty) < 1e-9:
        new_qty, avg = 0.0, 0.0
    elif old_qty == 0 or (old_qty > 0) != (new_qty > 0):
        avg = price  # opened, or flipped through zero
    elif abs(new_qty) > abs(old_qty):
        avg = (old_avg * abs(old_qty) + price * abs(signed_qty)) / abs(new_qty)
    else:
        avg = old_avg  # reduced: the entry price of what is left is unchanged
    set_position(conn, session_date, symbol, new_qty, avg, origin)
    return new_qty


def set_position(
    conn: Connection, session_date: date, symbol: str, qty: float, avg_entry_price: float | None, origin: str
) -> None:
    """Write one position-book row (a flat position is kept as qty 0, origin preserved)."""
    conn.execute(
        text(
            """
            INSERT INTO positions (session_date, symbol, qty, avg_entry_price, origin, updated_at)
            VALUES (:d, :s, :q, :p, :o, now())
            ON CONFLICT (session_date, symbol) DO UPDATE SET
                qty = EXCLUDED.qty, avg_entry_price = EXCLUDED.avg_entry_price, updated_at = now()
            """
        ),
        {"d": session_date, "s": symbol, "q": qty, "p": avg_entry_price, "o": origin},
    )


def book_positions(conn: Connection, session_date: date) -> dict[str, tuple[float, str]]:
    """The position book of a session: symbol -> (qty, origin), flat rows included."""
    rows = conn.execute(
        text("SELECT symbol, qty, origin FROM positions WHERE session_date = :d"), {"d": session_date}
    )
    return {r[0]: (float(r[1]), r[2]) for r in rows}


def stored_orders(conn: Connection, session_date: date) -> dict[str, str]:
    """client_order_id -> status for a session's orders in Postgres."""
    rows = conn.execute(
        text("SELECT client_order_id, status FROM orders WHERE session_date = :d"), {"d": session_date}
    )
    return {r[0]: r[1] for r in rows}


def max_decision_seq(conn: Connection, session_date: date) -> int:
    """The highest decision sequence used so far in a session (decisions or orders), -1 if none."""
    row = conn.execute(
        text(
            "SELECT GREATEST((SELECT max(seq) FROM decisions WHERE session_date = :d),"
            " (SELECT max(decision_seq) FROM orders WHERE session_date = :d))"
        ),
        {"d": session_date},
    ).first()
    return int(row[0]) if row and row[0] is not None else -1


def orders_sent(conn: Connection, session_date: date) -> int:
    """The strategy's orders earlier attempts sent in the session (everything but those never sent)."""
    row = conn.execute(
        text("SELECT count(*) FROM orders WHERE session_date = :d AND origin = 'strategy' AND status <> 'not_sent'"),
        {"d": session_date},
    ).first()
    return int(row[0]) if row else 0
