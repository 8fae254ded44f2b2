"""Everything that talks to Alpaca's trading API: ids, reconciliation, idempotent orders, trade
updates, end-of-day liquidation. The broker is the truth for positions and orders."""

from openbell.broker.ids import OrderKey, client_order_id, is_ours, parse_client_order_id
from openbell.broker.liquidate import LiquidationReport, liquidate
from openbell.broker.orders import SubmitResult, find_order, submit
from openbell.broker.reconcile import ReconcileReport, reconcile
from openbell.broker.updates import UpdateResult, apply_trade_update

__all__ = [
    "LiquidationReport",
    "OrderKey",
    "ReconcileReport",
    "SubmitResult",
    "UpdateResult",
    "apply_trade_update",
    "client_order_id",
    "find_order",
    "is_ours",
    "liquidate",
    "parse_client_order_id",
    "reconcile",
    "submit",
]
