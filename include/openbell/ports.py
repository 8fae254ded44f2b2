"""The broker and market-data contracts: commands in, venue-neutral reports out.

The trading core works on :class:`BrokerPort`, :class:`MarketDataPort` and :class:`StreamPort` only; an
adapter (:mod:`openbell.adapters.alpaca`) implements them and is the one place that knows a venue's SDK.
Reports are frozen dataclasses of plain values (strings, floats, aware datetimes), in the manner of
NautilusTrader's execution-client reports. A report never carries a venue's own model.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    import pandas as pd

    from openbell.strategy.base import Bar

# not_sent: the order never reached the broker (its deadline passed first, or the broker refused the key)
Outcome = Literal["submitted", "existing", "rejected", "unknown", "not_sent"]
# why the broker refused an order, venue-neutral (the adapter reads its venue's codes and messages)
Refusal = Literal["buying_power", "wash_trade", "not_tradable", "not_fractionable", "not_shortable",
                  "trading_blocked", "credentials", "other"]
REFUSALS: tuple[Refusal, ...] = ("buying_power", "wash_trade", "not_tradable", "not_fractionable", "not_shortable",
                                 "trading_blocked", "credentials", "other")
OrderScope = Literal["open", "all"]


class CredentialsError(RuntimeError):
    """The broker refused the configured credentials."""


@dataclass(frozen=True)
class Deadline:
    """Market time ``at``, reached at wall time ``due`` (``time.time()``; see :func:`openbell.clock.deadline`).
    Plain values: an order job carries it to its worker process."""

    at: datetime
    due: float

    def remaining(self) -> float:
        """Wall seconds left before ``at`` (<= 0: passed)."""
        return self.due - time.time()

    def refusal(self, wait: float = 0.0) -> str | None:
        """Why an order may not be sent after waiting ``wait`` more wall seconds (None: it may)."""
        if self.remaining() <= wait:
            return f"the trading cut-off {self.at.isoformat()} would pass before it could be sent"
        return None


class DeadlinePassed(RuntimeError):
    """An order's deadline (market time) came before it could be sent: it was not sent."""


class BrokerRefusal(Exception):
    """The broker refused a command (an order already final or gone, ...). ``str()`` is the broker's answer
    as sent; ``reason`` its message; ``status`` the HTTP status when known."""

    def __init__(self, answer: str, reason: str, status: int | None = None) -> None:
        super().__init__(answer)
        self.reason = reason
        self.status = status


class UnreadableUpdate(ValueError):
    """A trade update the adapter could not read into a :class:`TradeReport`; ``str()`` says why."""


@dataclass(frozen=True)
class Window:
    """A half-open interval [start, end) of bar start times, aware UTC."""

    start: datetime
    end: datetime


@dataclass(frozen=True, slots=True)
class OrderReport:
    """An order as the broker holds it. ``status`` and ``side`` are the broker's words (``filled``, ``buy``)."""

    client_order_id: str
    broker_order_id: str
    symbol: str
    side: str
    status: str
    created_at: datetime
    qty: float | None = None
    notional: float | None = None
    filled_qty: float | None = None
    filled_avg_price: float | None = None
    submitted_at: datetime | None = None
    filled_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class PositionReport:
    """A position as the broker holds it; ``qty`` is negative when short."""

    symbol: str
    qty: float
    avg_entry_price: float | None = None
    current_price: float | None = None


@dataclass(frozen=True, slots=True)
class AccountReport:
    """What openbell reads of the account; fields a broker no longer sends are None."""

    cash: float
    equity: float | None = None
    status: str | None = None
    buying_power: float | None = None


@dataclass(frozen=True, slots=True)
class AssetTerms:
    """What the broker says about trading one asset: tradable, in fractions, sold short (``shortable`` and
    ``easy_to_borrow`` both needed)."""

    symbol: str
    tradable: bool
    fractionable: bool
    shortable: bool
    easy_to_borrow: bool


@dataclass(frozen=True, slots=True)
class TradeReport:
    """One trade update (``new``, ``fill``, ``partial_fill``, ``canceled``, ...) with its order's state."""

    event: str
    order: OrderReport
    timestamp: datetime
    execution_id: str | None = None
    qty: float | None = None
    price: float | None = None
    position_qty: float | None = None


@dataclass(frozen=True, slots=True)
class TradeNotice:
    """What the live loop acts on at once when a trade update arrives, read without validation; ``raw`` is
    the update as the venue sent it, read into a :class:`TradeReport` off the loop (:meth:`StreamPort.read`)."""

    event: str
    client_order_id: str
    symbol: str
    side: str
    status: str
    execution_id: str | None
    qty: float | None
    price: float | None
    position_qty: float | None
    order_qty: float | None
    filled_qty: float | None
    filled_avg_price: float | None
    raw: Any


@dataclass(frozen=True)
class SubmitResult:
    """How a submission ended. ``order`` is the broker's order when one exists for the id.

    A refused order (``rejected``) carries the broker's message (``reason``), its HTTP status and error
    ``code``, and what kind of refusal it is (``refusal``; None when no broker answered, e.g. no order
    worker). ``buying_power`` is what the broker said is available, when a buying-power refusal says it.
    """

    client_order_id: str
    outcome: Outcome
    order: OrderReport | None = None
    reason: str | None = None
    http_status: int | None = None
    code: int | None = None
    refusal: Refusal | None = None
    buying_power: float | None = None

    @property
    def accepted(self) -> bool:
        return self.order is not None


class OrderChannel(Protocol):
    """A kept-open connection for orders, used by one sending thread."""

    def connect(self) -> None:
        """Open the connection the orders will use (raises when the broker cannot be reached)."""

    def submit_market(self, client_order_id: str, symbol: str, qty: float, side: str,
                      deadline: Deadline | None = None, limit_price: float | None = None,
                      notional: float | None = None) -> SubmitResult:
        """:meth:`BrokerPort.submit_market` on this connection."""
        ...


class BrokerPort(Protocol):
    """Commands to the broker and its reports. Idempotent reads retry transient failures; refused
    credentials raise :class:`CredentialsError`. Picklable: order workers rebuild it in their process."""

    def submit_market(self, client_order_id: str, symbol: str, qty: float, side: str,
                      deadline: Deadline | None = None, limit_price: float | None = None,
                      notional: float | None = None) -> SubmitResult:
        """A DAY market order (a limit order at ``limit_price`` when given) for ``qty`` shares (fractions
        allowed), or for ``notional`` dollars when given (``qty`` then only the estimate openbell counts; the
        broker is not sent it), under a deterministic id; never two orders for one id
        (an unclear outcome asks the broker for the id before anything is sent again). With a ``deadline``
        no request to send it starts, nor waits for the request budget, past that market time: the
        outcome is then ``not_sent`` (``unknown`` if an earlier send of it may have reached the broker)."""
        ...

    def find_order(self, client_order_id: str) -> OrderReport | None:
        """The order under ``client_order_id``; None when the broker has none."""
        ...

    def get_order(self, broker_order_id: str) -> OrderReport:
        """The order under the broker's own id."""
        ...

    def orders(self, scope: OrderScope, after: datetime | None = None) -> list[OrderReport]:
        """``open``: the open orders (one page). ``all``: every order submitted after ``after``, oldest
        first, all pages, one per ``client_order_id``."""
        ...

    def positions(self) -> list[PositionReport]:
        """Every position the broker holds."""
        ...

    def account(self) -> AccountReport:
        """The account's cash (and, when sent, equity and status)."""
        ...

    def cancel_all(self) -> int:
        """Cancel every open order; returns how many the broker cancelled."""
        ...

    def close_all(self) -> tuple[list[OrderReport], list[dict[str, Any]]]:
        """Close every position (cancelling open orders first): the close orders placed, and per refused
        symbol ``{"symbol", "status", "body"}``."""
        ...

    def close_position(self, symbol: str) -> OrderReport | None:
        """Close one position with one request (the caller polls and tries again); raises when refused."""
        ...

    def cancel_order(self, broker_order_id: str, *, retry: bool = True) -> None:
        """Cancel one order; :class:`BrokerRefusal` when the broker refuses (already final or gone).
        ``retry=False`` sends one request (the caller polls and tries again)."""
        ...

    def asset_tradable(self, symbol: str) -> bool | None:
        """Whether the broker trades ``symbol``; None when it does not know the symbol."""
        ...

    def asset_terms(self, symbol: str) -> AssetTerms | None:
        """The broker's terms for ``symbol``; None when it does not know the symbol."""
        ...

    def order_channel(self) -> OrderChannel:
        """A connection of its own for one sending thread."""
        ...

    def describe(self, exc: BaseException) -> str:
        """A failure of one of this port's calls as one line (the broker's message, never the request)."""
        ...


class MarketDataPort(Protocol):
    """Historical bars."""

    def bars(self, symbols: Sequence[str], window: Window) -> pd.DataFrame:
        """Every 1-minute bar of ``symbols`` starting in ``window`` (raw, unadjusted), with the columns of
        :data:`openbell.store.bars.BAR_COLUMNS`; an empty window or no symbol gives an empty frame."""
        ...

    def describe(self, exc: BaseException) -> str:
        """A failure of :meth:`bars` as one line."""
        ...


OnBar = Callable[["Bar", Any, Any], None]  # (bar, trade_count, vwap)
OnTrade = Callable[[TradeNotice], None]
OnStatus = Callable[[str, str, str], None]  # (symbol, status code, reason code) of a trading status message


class RunningStream(Protocol):
    """A stream started on the running event loop."""

    async def stop(self) -> None:
        """Stop it and close its connection (bounded in time)."""


class StreamPort(Protocol):
    """The live bar and trade-update streams. Each reconnects by itself with a jittered backoff of
    ``backoff = (min, max)`` wall seconds; callbacks run on the event loop."""

    def bars(self, symbols: Sequence[str], on_bar: OnBar, *, on_connect: Callable[[], None],
             on_subscribed: Callable[[], None], backoff: tuple[float, float],
             on_corrected: OnBar | None = None, on_status: OnStatus | None = None) -> RunningStream:
        """Stream ``symbols``' minute bars to ``on_bar``, the venue's corrections of bars already sent
        (late trades) to ``on_corrected``, and trading halts and resumptions to ``on_status``. ``on_connect``
        is called as each connection is attempted, ``on_subscribed`` when the venue acknowledges the
        subscription."""
        ...

    def trade_updates(self, on_update: OnTrade, *, on_connect: Callable[[], None],
                      backoff: tuple[float, float]) -> RunningStream:
        """Stream the account's trade updates to ``on_update``; ``on_connect`` is called once each
        connection is established and listening."""
        ...

    def read(self, raw: Any) -> TradeReport:
        """A :attr:`TradeNotice.raw` as a report; :class:`UnreadableUpdate` when it cannot be read."""
        ...


@dataclass(frozen=True)
class Venue:
    """The ports of one broker connection, built by the composition root (for Alpaca:
    :func:`openbell.adapters.alpaca.venue.alpaca_venue`) and handed to the parts that trade on it."""

    broker: BrokerPort
    market_data: MarketDataPort
    streams: StreamPort
