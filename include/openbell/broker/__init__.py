"""The trading core's broker work, on :class:`openbell.ports.BrokerPort`: ids, reconciliation, trade updates,
end-of-day liquidation. The broker is the truth for positions and orders."""

from openbell.broker.ids import OrderKey, client_order_id, is_ours, parse_client_order_id
from openbell.broker.liquidate import LiquidationReport, liquidate
from openbell.broker.reconcile import ReconcileReport, reconcile
from openbell.broker.updates import UpdateResult, apply_trade_update

__all__ = [
    "LiquidationReport",
    "OrderKey",
    "ReconcileReport",
    "UpdateResult",
    "apply_trade_update",
    "client_order_id",
    "is_ours",
    "liquidate",
    "parse_client_order_id",
    "reconcile",
]
