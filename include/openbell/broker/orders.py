"""Idempotent order submission: one deterministic id, never two orders for it."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderSide, TimeInForce
from alpaca.trading.models import Order
from alpaca.trading.requests import MarketOrderRequest

from openbell.alpaca import CredentialsError, error_message, is_transient, retrying, status_of

log = logging.getLogger(__name__)

Outcome = Literal["submitted", "existing", "rejected", "unknown"]
# Backoff of order lookups and resends: 0.05 s doubling up to 2 s, jittered (see openbell.alpaca.retrying).
LOOKUP_BASE_DELAY = 0.05
LOOKUP_MAX_DELAY = 2.0


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

    def lookup() -> Order | None:
        try:
            return client.get_order_by_client_id(client_order_id)  # type: ignore[return-value]
        except Exception as exc:
            if status_of(exc) == 404:
                return None
            raise

    return retrying(attempts=attempts, base_delay=LOOKUP_BASE_DELAY, max_delay=LOOKUP_MAX_DELAY)(lookup)


class _NotPlaced(Exception):
    """A transient failure after which the broker shows no order for the id: sending again is safe."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


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
    Only a send the broker shows no order for is retried, under :func:`openbell.alpaca.retrying`.
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
    policy = retrying(attempts=attempts, base_delay=LOOKUP_BASE_DELAY, max_delay=LOOKUP_MAX_DELAY,
                      retry_on=lambda exc: isinstance(exc, _NotPlaced))
    try:
        for attempt in policy:
            with attempt:
                return _send(client, request, client_order_id, attempt.retry_state.attempt_number, attempts)
    except _NotPlaced as exc:  # every attempt failed transiently and the broker never showed the order
        return SubmitResult(client_order_id, "unknown", reason=exc.reason)
    raise AssertionError("unreachable: the last attempt returns or raises")


def _send(client: TradingClient, request: MarketOrderRequest, client_order_id: str, attempt: int,
          attempts: int) -> SubmitResult:
    """One send of ``request``; raises :class:`_NotPlaced` when it may be sent again."""
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
        raise _NotPlaced(reason) from exc
