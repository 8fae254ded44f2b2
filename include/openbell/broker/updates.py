"""Trade updates (:class:`~openbell.ports.TradeReport`) into Postgres: order transitions, deduplicated fills.

Fills of one order add up to the order's cumulative ``filled_qty``, exactly once, whichever way they
arrive. The rule:

- A stream fill is stored once per ``execution_id``, and only for the part of it that keeps the
  order's recorded fills within the largest cumulative ``filled_qty`` the broker has reported for
  it (this update's or an earlier one's). A fill whose quantity is already recorded (replayed after
  a reconnect, or recovered first) stores nothing; fills arriving out of order are all kept.
- When the broker reports an order with more ``filled_qty`` than its recorded fills (its fill events
  were lost while the stream was down), :func:`recover_fills` stores the difference as one fill with
  the deterministic id ``recovered:<broker order id>:<cumulative filled_qty>``, priced so that the
  order's recorded cost equals ``filled_qty * filled_avg_price``. Recovering again from the same
  broker state finds nothing missing (or the same id), so it is idempotent.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import Connection, Engine

from openbell.broker import book
from openbell.broker.ids import is_ours
from openbell.broker.rows import order_row
from openbell.ports import OrderReport, TradeReport
from openbell.store.scope import account_of

EPS = 1e-9


@dataclass(frozen=True)
class UpdateResult:
    """What one trade update changed."""

    event: str
    client_order_id: str
    symbol: str
    status: str
    new_fill: bool = False
    fill_qty: float = 0.0
    fill_price: float = 0.0
    position_qty: float | None = None


@dataclass(frozen=True)
class Recovered:
    """A fill stored by :func:`recover_fills`."""

    execution_id: str
    client_order_id: str
    symbol: str
    side: str
    qty: float
    price: float


def _origin(conn: Connection, order: OrderReport) -> str:
    """``strategy`` for an order with openbell's id for the account whose state ``conn`` reaches, else
    ``liquidation`` (another account's id included)."""
    return "strategy" if is_ours(order.client_order_id, account=account_of(conn.engine.url)) else "liquidation"


def apply_trade_update(
    conn_or_engine: Connection | Engine, session_date: date, update: TradeReport
) -> UpdateResult:
    """Write one trade update; a fill is stored once per ``execution_id`` (see the module's rule)
    and only a stored fill moves the position book. Orders without openbell's id for the state's account
    (e.g. the liquidation's close orders) are recorded with origin ``liquidation``.
    """
    if isinstance(conn_or_engine, Engine):
        with conn_or_engine.begin() as conn:
            return apply_trade_update(conn, session_date, update)
    conn = conn_or_engine
    order = update.order
    name = update.event
    book.upsert_order(conn, order_row(order, session_date, _origin(conn, order)))  # locks the order's row
    result = UpdateResult(name, order.client_order_id, order.symbol, order.status)
    if name not in ("fill", "partial_fill") or update.execution_id is None:
        return result
    qty = float(update.qty if update.qty is not None else order.filled_qty or 0)
    price = float(update.price if update.price is not None else order.filled_avg_price or 0)
    if order.filled_qty is not None:
        cum, recorded, _ = book.recorded_fills(conn, order.client_order_id)
        qty = min(qty, max(cum, order.filled_qty) - recorded)
    if qty <= EPS:
        return result
    new, position = _store_fill(conn, session_date, order, update.execution_id, qty, price, update.timestamp)
    return UpdateResult(name, order.client_order_id, order.symbol, result.status, new, qty, price, position)


def recover_fills(
    conn: Connection, session_date: date, order: OrderReport, *, move_book: bool = True
) -> Recovered | None:
    """Store the part of ``order``'s ``filled_qty`` that has no recorded fill (see the module's rule).

    Also records the order's state. ``move_book=False`` leaves the position book alone, for callers
    that set it from the broker's positions anyway.
    """
    book.upsert_order(conn, order_row(order, session_date, _origin(conn, order)))
    cum = float(order.filled_qty or 0)
    _, recorded, cost = book.recorded_fills(conn, order.client_order_id)
    gap = cum - recorded
    if gap <= EPS:
        return None
    avg = float(order.filled_avg_price or 0)
    price = (cum * avg - cost) / gap if avg > 0 else 0.0
    if not price > 0:  # rounding in the broker's average: fall back to the average itself
        price = avg
    execution_id = f"recovered:{order.broker_order_id}:{cum:g}"
    ts = order.filled_at or order.updated_at or order.submitted_at or order.created_at
    new, _ = _store_fill(conn, session_date, order, execution_id, gap, price, ts, move_book=move_book)
    if not new:
        return None
    return Recovered(execution_id, order.client_order_id, order.symbol, order.side, gap, price)


def _store_fill(
    conn: Connection, session_date: date, order: OrderReport, execution_id: str, qty: float, price: float,
    ts: datetime, *, move_book: bool = True,
) -> tuple[bool, float | None]:
    """Insert one fill of ``order`` (once per execution id); move the position book when it is new.
    Returns whether it was new and the book's position after it (None when the book did not move)."""
    side = order.side
    new = book.insert_fill(conn, execution_id=execution_id, client_order_id=order.client_order_id,
                           session_date=session_date, symbol=order.symbol, side=side, qty=qty,
                           price=price, ts=ts)
    if not (new and move_book):
        return new, None
    signed = qty if side == "buy" else -qty
    return new, book.apply_fill_to_book(conn, session_date, order.symbol, signed, price)
