"""Broker models as openbell's records: an alpaca-py Order as an ``orders`` row, a Position's signed
quantity. Reconciliation, trade updates and liquidation all build on these."""

from __future__ import annotations

from datetime import date
from typing import Any

from alpaca.trading.models import Order, Position

from openbell.broker import book
from openbell.broker.ids import parse_client_order_id


def optional_float(value: Any) -> float | None:
    """A broker number (text, possibly empty) as a float, None when absent."""
    return None if value is None or value == "" else float(value)


def _v(value: Any) -> str:
    return str(getattr(value, "value", value))


def signed_qty(position: Position) -> float:
    """A position's quantity, negative when short (whichever sign the broker sent)."""
    qty = float(position.qty)
    return -abs(qty) if _v(position.side) == "short" else qty


def order_row(order: Order, session_date: date, origin: str, reason: str | None = None) -> book.OrderRow:
    """An ``orders`` row from an alpaca-py Order."""
    key = parse_client_order_id(order.client_order_id)
    return book.OrderRow(
        client_order_id=order.client_order_id,
        session_date=session_date,
        symbol=order.symbol or "",
        side=_v(order.side),
        qty=optional_float(order.qty),
        notional=optional_float(order.notional),
        status=_v(order.status),
        decision_seq=key.decision_seq if key else None,
        broker_order_id=str(order.id),
        filled_qty=optional_float(order.filled_qty),
        filled_avg_price=optional_float(order.filled_avg_price),
        reason=reason,
        origin=origin,
    )
