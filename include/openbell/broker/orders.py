"""Idempotent order submission: one deterministic id, never two orders for it."""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from typing import Literal

from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderSide, TimeInForce
from alpaca.trading.models import Order
from alpaca.trading.requests import MarketOrderRequest

from openbell.alpaca import CredentialsError, error_message, is_transient, status_of

log = logging.getLogger(__name__)

Outcome = Literal["submitted", "existing", "rejected", "unknown"]


@dataclass(frozen=True)
class SubmitResult:
    """How a submission ended. ``order`` is the broker's order when one exists for the id."""

    client_order_id: str
    outcome: Outcome
    order: Order | None = None
    reason: str | None = None
    http_status: int | None = None

    @property
    def accepted(self) -> bool:
        return self.order is not None


def find_order(client: TradingClient, client_order_id: str, attempts: int = 4) -> Order | None:
    """The broker's order for ``client_order_id``, None when the broker has none (404)."""
    for attempt in range(1, attempts + 1):
        try:
            return client.get_order_by_client_id(client_order_id)  # type: ignore[return-value]
        except Exception as exc:
            if status_of(exc) == 404:
                return None
            if attempt == attempts or not is_transient(exc):
                raise
            time.sleep(min(2.0, 0.05 * 2 ** (attempt - 1)) * (0.5 + random.random() / 2))
    return None


def submit(
    client: TradingClient,
    *,
    client_order_id: str,
    symbol: str,
    qty: float,
    side: OrderSide | str,
    attempts: int = 4,
) -> SubmitResult:
    """Send a DAY market order for ``qty`` shares under a deterministic id.

    On a duplicate-id 422, a timeout or any transient failure, the broker is asked for the id
    before anything else is tried: an order that exists is returned as ``existing``. Because the
    broker refuses a reused id, a retry can never create a second order. Other refusals (403
    buying power, 422 unknown symbol, ...) come back as ``rejected`` with the broker's reason;
    ``unknown`` means the broker could not be reached to decide (the caller reconciles later).
    """
    if qty <= 0:
        raise ValueError(f"qty must be > 0, not {qty}")
    request = MarketOrderRequest(
        symbol=symbol,
        qty=qty,
        side=OrderSide(side),
        time_in_force=TimeInForce.DAY,
        client_order_id=client_order_id,
    )
    last_reason = ""
    for attempt in range(1, attempts + 1):
        try:
            order = client.submit_order(request)
            return SubmitResult(client_order_id, "submitted", order)  # type: ignore[arg-type]
        except Exception as exc:
            status = status_of(exc)
            reason = error_message(exc)
            if status == 401:
                raise CredentialsError(f"Alpaca refused the credentials: {reason}") from exc
            duplicate = status == 422 and "client_order_id" in reason.lower()
            if not duplicate and not is_transient(exc):
                return SubmitResult(client_order_id, "rejected", reason=reason, http_status=status)
            last_reason = reason
            try:
                existing = find_order(client, client_order_id)
            except Exception as lookup_exc:
                log.warning("lookup of %s failed: %s", client_order_id, error_message(lookup_exc))
                existing = None
            if existing is not None:
                return SubmitResult(client_order_id, "existing", existing)
            if duplicate:  # the id is taken yet the broker cannot show it: never resend
                return SubmitResult(client_order_id, "unknown", reason=reason, http_status=status)
            log.warning("submit %s failed (%s), attempt %d/%d", client_order_id, reason, attempt, attempts)
            if attempt < attempts:
                time.sleep(min(2.0, 0.05 * 2 ** (attempt - 1)) * (0.5 + random.random() / 2))
    return SubmitResult(client_order_id, "unknown", reason=last_reason)
