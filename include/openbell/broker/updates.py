"""Trade updates from the broker's stream into Postgres: order transitions, deduplicated fills."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from alpaca.trading.models import TradeUpdate
from sqlalchemy import Connection, Engine

from openbell.broker import book
from openbell.broker.ids import is_ours
from openbell.broker.reconcile import order_row


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


def _event_name(update: TradeUpdate) -> str:
    return str(getattr(update.event, "value", update.event))


def apply_trade_update(
    conn_or_engine: Connection | Engine, session_date: date, update: TradeUpdate
) -> UpdateResult:
    """Write one trade update; a fill is stored once per ``execution_id`` and only a new fill moves
    the position book. Orders without openbell's id (e.g. the liquidation's close orders) are
    recorded with origin ``liquidation``.
    """
    if isinstance(conn_or_engine, Engine):
        with conn_or_engine.begin() as conn:
            return apply_trade_update(conn, session_date, update)
    conn = conn_or_engine
    order = update.order
    name = _event_name(update)
    origin = "strategy" if is_ours(order.client_order_id) else "liquidation"
    book.upsert_order(conn, order_row(order, session_date, origin))
    result = UpdateResult(
        name, order.client_order_id, order.symbol or "", str(getattr(order.status, "value", order.status))
    )
    if name not in ("fill", "partial_fill") or update.execution_id is None:
        return result
    qty = float(update.qty if update.qty is not None else order.filled_qty or 0)
    price = float(update.price if update.price is not None else order.filled_avg_price or 0)
    side = str(getattr(order.side, "value", order.side))
    new = book.insert_fill(
        conn,
        execution_id=str(update.execution_id),
        client_order_id=order.client_order_id,
        session_date=session_date,
        symbol=order.symbol or "",
        side=side,
        qty=qty,
        price=price,
        ts=update.timestamp,
    )
    position = None
    if new and qty > 0:
        signed = qty if side == "buy" else -qty
        position = book.apply_fill_to_book(conn, session_date, order.symbol or "", signed, price)
    return UpdateResult(
        name, order.client_order_id, order.symbol or "", result.status, new, qty, price, position
    )
