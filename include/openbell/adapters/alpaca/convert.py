"""alpaca-py's models and stream messages as the ports' reports (:mod:`openbell.ports`).

Numbers arrive as text (possibly empty) or floats and leave as floats or None; enums leave as their
values (``filled``, ``buy``); a short position's quantity leaves negative whichever sign Alpaca sent.
"""

from __future__ import annotations

import json
import math
from typing import Any

from alpaca.trading.models import Order, Position, TradeAccount, TradeUpdate

from openbell.ports import (
    AccountReport,
    OrderReport,
    PositionReport,
    Refusal,
    SubmitResult,
    TradeNotice,
    TradeReport,
    UnreadableUpdate,
)

FILL_EVENTS = ("fill", "partial_fill")

# Alpaca's order refusals, told apart by their message (one code, 40310000, serves several of them)
REFUSAL_WORDS: tuple[tuple[Refusal, tuple[str, ...]], ...] = (
    ("trading_blocked", ("not authorized to trade", "not allowed to trade", "trading blocked",
                         "trading is blocked", "account is blocked", "trading_blocked")),
    ("wash_trade", ("wash trade",)),
    ("buying_power", ("buying power",)),
    ("not_fractionable", ("not fractionable",)),
    ("not_shortable", ("cannot be sold short",)),
    ("not_tradable", ("not tradable", "not tradeable", "is not active", "asset not found")),
)


def optional_float(value: Any) -> float | None:
    """A broker number (text, possibly empty) as a float, None when absent."""
    return None if value is None or value == "" else float(value)


def value_of(value: Any) -> str:
    """An enum's value (anything else as text)."""
    return str(getattr(value, "value", value))


def order_report(order: Order) -> OrderReport:
    """An alpaca-py Order as an :class:`OrderReport`."""
    return OrderReport(
        client_order_id=order.client_order_id,
        broker_order_id=str(order.id),
        symbol=order.symbol or "",
        side=value_of(order.side),
        status=value_of(order.status),
        qty=optional_float(order.qty),
        notional=optional_float(order.notional),
        filled_qty=optional_float(order.filled_qty),
        filled_avg_price=optional_float(order.filled_avg_price),
        created_at=order.created_at,
        submitted_at=order.submitted_at,
        filled_at=order.filled_at,
        updated_at=order.updated_at,
    )


def position_report(position: Position) -> PositionReport:
    """An alpaca-py Position as a :class:`PositionReport`; negative when short, whichever sign was sent."""
    qty = float(position.qty)
    return PositionReport(
        symbol=position.symbol,
        qty=-abs(qty) if value_of(position.side) == "short" else qty,
        avg_entry_price=optional_float(position.avg_entry_price),
        current_price=optional_float(position.current_price),
    )


def account_report(account: TradeAccount) -> AccountReport:
    """The account's cash, equity and status; fields Alpaca no longer sends are None."""
    status = getattr(account, "status", None)
    return AccountReport(
        cash=float(account.cash),  # type: ignore[arg-type]
        equity=optional_float(getattr(account, "equity", None)),
        status=None if status is None else value_of(status),
        buying_power=optional_float(getattr(account, "buying_power", None)),
    )


def error_body(text: str) -> dict[str, Any]:
    """An Alpaca error body (``{"code": ..., "message": ..., ...}``) from its text; {} when it is not one."""
    try:
        body = json.loads(text)
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def refusal_of(message: str) -> Refusal:
    """The kind of an order refusal, from the broker's message."""
    text = message.lower()
    if "asset" in text and "not found" in text:
        return "not_tradable"
    for kind, words in REFUSAL_WORDS:
        if any(w in text for w in words):
            return kind
    return "other"


def rejected_result(client_order_id: str, body_text: str, reason: str, status: int | None) -> SubmitResult:
    """A refused order as a ``rejected`` :class:`SubmitResult`: the broker's message, status, code, the kind
    of refusal, and the buying power a buying-power refusal reports."""
    body = error_body(body_text)
    code = body.get("code")
    kind = refusal_of(reason)
    try:
        available = optional_float(body.get("buying_power")) if kind == "buying_power" else None
    except (TypeError, ValueError):
        available = None
    return SubmitResult(client_order_id, "rejected", reason=reason, http_status=status,
                        code=code if isinstance(code, int) else None, refusal=kind, buying_power=available)


def trade_report(update: TradeUpdate) -> TradeReport:
    """An alpaca-py TradeUpdate as a :class:`TradeReport`."""
    return TradeReport(
        event=value_of(update.event),
        order=order_report(update.order),
        timestamp=update.timestamp,
        execution_id=None if update.execution_id is None else str(update.execution_id),
        qty=optional_float(update.qty),
        price=optional_float(update.price),
        position_qty=optional_float(update.position_qty),
    )


def read_trade_update(data: dict[str, Any]) -> TradeReport:
    """A trade update's ``data`` as alpaca-py parses it, as a report; :class:`UnreadableUpdate` (saying
    alpaca-py's error) when alpaca-py refuses it."""
    try:
        update = TradeUpdate(**data)
    except Exception as exc:
        raise UnreadableUpdate(f"{type(exc).__name__}: {exc}") from exc
    return trade_report(update)


def trade_notice(msg: dict[str, Any]) -> TradeNotice:
    """A raw trade-stream message (``{"stream": "trade_updates", "data": {...}}``) as a :class:`TradeNotice`,
    without validation; the fill's numbers are read only for fills."""
    data = msg.get("data") or {}
    order = data.get("order") or {}
    event = str(data.get("event"))
    execution_id = data.get("execution_id")
    fill = event in FILL_EVENTS and execution_id is not None
    return TradeNotice(
        event=event,
        client_order_id=str(order.get("client_order_id") or ""),
        symbol=str(order.get("symbol") or ""),
        side=str(order.get("side")),
        status=str(order.get("status")),
        execution_id=None if execution_id is None else str(execution_id),
        qty=optional_float(data.get("qty")) if fill else None,
        price=optional_float(data.get("price")) if fill else None,
        position_qty=optional_float(data.get("position_qty")) if fill else None,
        order_qty=optional_float(order.get("qty")) if fill else None,
        filled_qty=optional_float(order.get("filled_qty")),
        filled_avg_price=optional_float(order.get("filled_avg_price")) if fill else None,
        raw=data,
    )


def price(value: Any) -> float:
    """A streamed number as a float; a missing or unreadable one becomes NaN (the bar check refuses it)."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan

