"""Broker reports as openbell's records: an :class:`~openbell.ports.OrderReport` as an ``orders`` row.
Reconciliation, trade updates and liquidation all build on it."""

from __future__ import annotations

from datetime import date

from openbell.broker import book
from openbell.broker.ids import parse_client_order_id
from openbell.ports import OrderReport


def order_row(order: OrderReport, session_date: date, origin: str, reason: str | None = None,
              estimate: float | None = None) -> book.OrderRow:
    """An ``orders`` row from a broker's order report; ``estimate`` the shares of a notional order (the broker
    says no qty for one). Only a ``strategy`` order (one with the state's account's id) has a ``decision_seq``:
    another account's id says nothing of this account's decisions."""
    key = parse_client_order_id(order.client_order_id)
    return book.OrderRow(
        client_order_id=order.client_order_id,
        session_date=session_date,
        symbol=order.symbol,
        side=order.side,
        qty=order.qty if order.qty is not None else estimate,
        notional=order.notional,
        status=order.status,
        decision_seq=key.decision_seq if key and origin == "strategy" else None,
        broker_order_id=order.broker_order_id,
        filled_qty=order.filled_qty,
        filled_avg_price=order.filled_avg_price,
        reason=reason,
        origin=origin,
    )
