"""The broker port on Alpaca's trading API: idempotent orders, order listings, positions, liquidation calls.

Idempotent reads go through :func:`~openbell.adapters.alpaca.retry.call` (transient failures retried);
orders go through :func:`submit`, which asks the broker for the id before it ever sends again.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime
from typing import Any

from alpaca.common.enums import Sort
from alpaca.common.exceptions import APIError
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderSide, QueryOrderStatus, TimeInForce
from alpaca.trading.models import Order
from alpaca.trading.requests import GetOrdersRequest, LimitOrderRequest, MarketOrderRequest, OrderRequest

from openbell.adapters.alpaca import rebuild
from openbell.adapters.alpaca.budget import pace_of
from openbell.adapters.alpaca.config import AlpacaConfig
from openbell.adapters.alpaca.convert import account_report, order_report, position_report, rejected_result
from openbell.adapters.alpaca.retry import call, error_message, is_auth_error, is_transient, retrying, status_of
from openbell.adapters.alpaca.transport import OrderSession, order_client
from openbell.ports import (
    AccountReport,
    AssetTerms,
    BrokerRefusal,
    Deadline,
    DeadlinePassed,
    OrderReport,
    OrderScope,
    PositionReport,
    SubmitResult,
)

log = logging.getLogger(__name__)

# Backoff of order lookups and resends: 0.05 market s doubling up to 2, jittered (see retry.retrying).
LOOKUP_BASE_DELAY = 0.05
LOOKUP_MAX_DELAY = 2.0
ORDER_PAGE = 500


def find_order(client: TradingClient, client_order_id: str, attempts: int = 4) -> Order | None:
    """The broker's order for ``client_order_id``, None when the broker has none (404)."""

    def lookup() -> Order | None:
        try:
            return client.get_order_by_client_id(client_order_id)  # type: ignore[return-value]
        except Exception as exc:
            if status_of(exc) == 404:
                return None
            raise

    return retrying(attempts=attempts, base_delay=LOOKUP_BASE_DELAY, max_delay=LOOKUP_MAX_DELAY,
                    pace=lambda: pace_of(client))(lookup)


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
    deadline: Deadline | None = None,
    limit_price: float | None = None,
    notional: float | None = None,
) -> SubmitResult:
    """Send a DAY market order for ``qty`` shares (fractions allowed) under a deterministic id; a DAY limit
    order at ``limit_price`` when given; a DAY market order for ``notional`` dollars when given (``qty``, the
    shares expected, is then not sent).

    On a duplicate-id 422, a timeout or any transient failure, the broker is asked for the id
    before anything else is tried: an order that exists is returned as ``existing``. Because the
    broker refuses a reused id, a retry can never create a second order. Other refusals (403
    buying power, 422 unknown symbol, ...) come back as ``rejected`` with the broker's reason, code and
    kind of refusal (:func:`~openbell.adapters.alpaca.convert.rejected_result`);
    ``unknown`` means the broker could not be reached to decide (the caller reconciles later).
    Only a send the broker shows no order for is retried, under :func:`retry.retrying`. Past ``deadline``
    (market time) no send starts nor waits for the request budget: ``not_sent`` on the first attempt,
    ``unknown`` after an earlier one (its request may yet have reached the broker).
    """
    request = _request(client_order_id, symbol, qty, side, limit_price, notional)
    policy = retrying(attempts=attempts, base_delay=LOOKUP_BASE_DELAY, max_delay=LOOKUP_MAX_DELAY,
                      retry_on=lambda exc: isinstance(exc, _NotPlaced), pace=lambda: pace_of(client))
    session = getattr(client, "_session", None)
    if isinstance(session, OrderSession):
        session.deadline = deadline  # the budget is never waited for past it
    number = 0
    try:
        for attempt in policy:
            with attempt:
                number = attempt.retry_state.attempt_number
                if deadline is not None and (why := deadline.refusal()) is not None:
                    raise DeadlinePassed(why)
                return _send(client, request, client_order_id, number, attempts)
    except _NotPlaced as exc:  # every attempt failed transiently and the broker never showed the order
        return SubmitResult(client_order_id, "unknown", reason=exc.reason)
    except DeadlinePassed as exc:
        return SubmitResult(client_order_id, "not_sent" if number <= 1 else "unknown", reason=str(exc))
    finally:
        if isinstance(session, OrderSession):
            session.deadline = None
    raise AssertionError("unreachable: the last attempt returns or raises")


def _request(client_order_id: str, symbol: str, qty: float, side: OrderSide | str, limit_price: float | None,
             notional: float | None) -> OrderRequest:
    """The alpaca-py request of one DAY order: by ``qty``, at ``limit_price``, or for ``notional`` dollars."""
    if qty <= 0:
        raise ValueError(f"qty must be > 0, not {qty}")
    fields: dict[str, Any] = {"symbol": symbol, "side": OrderSide(side), "time_in_force": TimeInForce.DAY,
                              "client_order_id": client_order_id}
    if notional is not None:
        if limit_price is not None or not notional > 0:
            raise ValueError(f"a notional order is a market order for dollars > 0, not {notional} at {limit_price}")
        return MarketOrderRequest(**fields, notional=notional)
    if limit_price is None:
        return MarketOrderRequest(**fields, qty=qty)
    return LimitOrderRequest(**fields, qty=qty, limit_price=limit_price)


def _send(client: TradingClient, request: OrderRequest, client_order_id: str, attempt: int,
          attempts: int) -> SubmitResult:
    """One send of ``request``; raises :class:`_NotPlaced` when it may be sent again."""
    try:
        order = client.submit_order(request)
        return SubmitResult(client_order_id, "submitted", order_report(order))  # type: ignore[arg-type]
    except DeadlinePassed:
        raise
    except Exception as exc:
        status = status_of(exc)
        reason = error_message(exc)
        if status in (401, 403) and is_auth_error(exc):  # refused before any order was made: never sent
            return SubmitResult(client_order_id, "not_sent", reason=f"Alpaca refused the credentials: {reason}",
                                http_status=status, refusal="credentials")
        duplicate = status == 422 and "client_order_id" in reason.lower()
        if not duplicate and not is_transient(exc):
            return rejected_result(client_order_id, str(exc), reason, status)
        try:
            existing = find_order(client, client_order_id)
        except Exception as lookup_exc:
            log.warning("lookup of %s failed: %s", client_order_id, error_message(lookup_exc))
            existing = None
        if existing is not None:
            return SubmitResult(client_order_id, "existing", order_report(existing))
        if duplicate:  # the id is taken yet the broker cannot show it: never resend
            return SubmitResult(client_order_id, "unknown", reason=reason, http_status=status)
        log.warning("submit %s failed (%s), attempt %d/%d", client_order_id, reason, attempt, attempts)
        raise _NotPlaced(reason) from exc


class AlpacaOrderChannel:
    """Orders on one kept-open connection (:func:`~openbell.adapters.alpaca.transport.order_client`)."""

    def __init__(self, config: AlpacaConfig) -> None:
        self._client = order_client(config)

    def connect(self) -> None:
        """Open the keep-alive connection the orders will use."""
        self._client.get_clock()

    def submit_market(self, client_order_id: str, symbol: str, qty: float, side: str,
                      deadline: Deadline | None = None, limit_price: float | None = None,
                      notional: float | None = None) -> SubmitResult:
        """:func:`submit` on this connection."""
        return submit(self._client, client_order_id=client_order_id, symbol=symbol, qty=qty, side=side,
                      deadline=deadline, limit_price=limit_price, notional=notional)


class AlpacaBroker:
    """:class:`~openbell.ports.BrokerPort` on Alpaca (or the simulator). Each thread gets its own
    hardened TradingClient; ``attempts`` bounds the retries of idempotent reads. Pickles as its settings."""

    def __init__(self, config: AlpacaConfig, *, attempts: int = 6) -> None:
        self.config = config
        self.attempts = attempts
        self._local = threading.local()

    def __getstate__(self) -> dict[str, Any]:
        return {"config": self.config, "attempts": self.attempts}

    def __reduce__(self) -> tuple[Any, ...]:
        """Rebuilt by :func:`openbell.adapters.alpaca.rebuild.rebuilt`: an order worker imports what orders need."""
        return (rebuild.rebuilt, (__name__, type(self).__name__, self.__getstate__()))

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["config"], attempts=state["attempts"])  # type: ignore[misc]

    def __repr__(self) -> str:
        return f"AlpacaBroker({self.config!r})"

    @property
    def client(self) -> TradingClient:
        """This thread's TradingClient."""
        client: TradingClient | None = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = self.config.trading_client()
        return client

    def _call(self, fn: Any, *args: Any, what: str, **kwargs: Any) -> Any:
        client = self.client
        return call(fn, *args, attempts=self.attempts, what=what, pace=lambda: pace_of(client), **kwargs)

    # -- orders --------------------------------------------------------------------------------

    def submit_market(self, client_order_id: str, symbol: str, qty: float, side: str,
                      deadline: Deadline | None = None, limit_price: float | None = None,
                      notional: float | None = None) -> SubmitResult:
        return submit(self.client, client_order_id=client_order_id, symbol=symbol, qty=qty, side=side,
                      deadline=deadline, limit_price=limit_price, notional=notional)

    def find_order(self, client_order_id: str) -> OrderReport | None:
        order = find_order(self.client, client_order_id)
        return None if order is None else order_report(order)

    def get_order(self, broker_order_id: str) -> OrderReport:
        return order_report(self._call(self.client.get_order_by_id, broker_order_id, what="get_order_by_id"))

    def orders(self, scope: OrderScope, after: datetime | None = None) -> list[OrderReport]:
        client = self.client
        if scope == "open":
            request = GetOrdersRequest(status=QueryOrderStatus.OPEN, after=after, limit=ORDER_PAGE)
            return [order_report(o) for o in self._call(client.get_orders, request, what="get_orders(open)")]
        seen: dict[str, Order] = {}
        while True:
            request = GetOrdersRequest(status=QueryOrderStatus.ALL, after=after, limit=ORDER_PAGE, direction=Sort.ASC)
            page: list[Order] = self._call(client.get_orders, request, what="get_orders(all)")
            fresh = [o for o in page if o.client_order_id not in seen]
            for o in fresh:
                seen[o.client_order_id] = o
            if len(page) < ORDER_PAGE or not fresh:
                break
            after = max(o.submitted_at or o.created_at for o in page)
        return [order_report(o) for o in seen.values()]

    def order_channel(self) -> AlpacaOrderChannel:
        return AlpacaOrderChannel(self.config)

    # -- the account ---------------------------------------------------------------------------

    def positions(self) -> list[PositionReport]:
        return [position_report(p) for p in self._call(self.client.get_all_positions, what="get_all_positions")]

    def account(self) -> AccountReport:
        return account_report(self._call(self.client.get_account, what="get_account"))

    def asset_tradable(self, symbol: str) -> bool | None:
        terms = self.asset_terms(symbol)
        return None if terms is None else terms.tradable

    def asset_terms(self, symbol: str) -> AssetTerms | None:
        try:
            asset = self._call(self.client.get_asset, symbol, what=f"get_asset({symbol})",
                               conn_id=self.config.conn_id)
        except APIError as exc:
            if status_of(exc) in (404, 422):
                return None
            raise
        return AssetTerms(symbol, bool(getattr(asset, "tradable", True)), bool(getattr(asset, "fractionable", False)),
                          bool(getattr(asset, "shortable", False)), bool(getattr(asset, "easy_to_borrow", False)))

    # -- cancelling and closing ----------------------------------------------------------------

    def cancel_all(self) -> int:
        responses = self._call(self.client.cancel_orders, what="cancel_orders")
        return sum(1 for r in responses or [] if getattr(r, "status", None) == 200)

    def close_all(self) -> tuple[list[OrderReport], list[dict[str, Any]]]:
        closes = self._call(self.client.close_all_positions, cancel_orders=True, what="close_all_positions")
        placed: list[OrderReport] = []
        refusals: list[dict[str, Any]] = []
        for r in closes or []:
            if r.status == 200 and isinstance(r.body, Order):
                placed.append(order_report(r.body))
            else:
                body = r.body.model_dump() if hasattr(r.body, "model_dump") else r.body
                refusals.append({"symbol": r.symbol, "status": r.status, "body": body})
        return placed, refusals

    def close_position(self, symbol: str) -> OrderReport | None:
        order = self.client.close_position(symbol)
        return order_report(order) if isinstance(order, Order) else None

    def cancel_order(self, broker_order_id: str, *, retry: bool = True) -> None:
        client = self.client
        try:
            if retry:
                self._call(client.cancel_order_by_id, broker_order_id, what="cancel_order_by_id")
            else:
                client.cancel_order_by_id(broker_order_id)
        except APIError as exc:
            raise BrokerRefusal(str(exc), error_message(exc), status_of(exc)) from exc

    def describe(self, exc: BaseException) -> str:
        return describe(exc)


def describe(exc: BaseException) -> str:
    """A failure as one line: the broker's message of an APIError or a refusal, else type and text."""
    if isinstance(exc, BrokerRefusal):
        return exc.reason
    return error_message(exc)
