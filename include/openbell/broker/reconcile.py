"""Startup reconciliation: the broker's positions and orders become openbell's book (broker wins)."""

from __future__ import annotations

import logging
import math
from collections.abc import Collection
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from typing import Any

from sqlalchemy import Connection, Engine

from openbell.broker import book
from openbell.broker.ids import is_ours
from openbell.broker.journal import event
from openbell.broker.rows import order_row
from openbell.broker.updates import recover_fills
from openbell.calendar import session as session_of
from openbell.ports import BrokerPort, BrokerRefusal, OrderReport, PositionReport
from openbell.store.scope import account_of

log = logging.getLogger(__name__)


@dataclass
class ReconcileReport:
    """What reconciliation found and changed, for the step ledger's summary."""

    positions: int = 0
    positions_adopted: int = 0
    orders_found: int = 0
    orders_kept: int = 0
    orders_cancelled: int = 0
    differences: int = 0
    fills_recovered: int = 0
    max_decision_seq: int = -1
    adopted: list[str] = field(default_factory=list)
    adopted_left_alone: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def broker_session_orders(broker: BrokerPort, session_date: date) -> list[OrderReport]:
    """Every order the broker holds that was submitted for this session (openbell's or not)."""
    s = session_of(session_date)
    if s is None:
        raise ValueError(f"{session_date} is not an NYSE session")
    # orders queued before the open belong to the session too
    return broker.orders("all", after=s.open - timedelta(hours=18))


def adoption(symbol: str, qty: float, universe: Collection[str] | None) -> dict[str, Any]:
    """How an adopted position of ``qty`` (negative: short) is held: ``short``, ``fractional`` and, given the
    run's ``universe``, ``in_universe`` and ``handling``: a universe symbol is traded by the strategy like
    its own (in whole shares, so a fraction stays), any other is left alone until the liquidation."""
    whole = math.trunc(qty)
    info: dict[str, Any] = {"short": qty < 0, "fractional": abs(qty - whole) > 1e-9}
    if universe is None:
        return info
    info["in_universe"] = symbol in universe
    if not info["in_universe"]:
        info["handling"] = "left alone until the liquidation closes it (outside the universe)"
    elif info["fractional"]:
        fraction = round(qty - whole, 9)
        info["handling"] = (f"traded by the strategy from its first trading decision in whole shares; "
                            f"the fraction {fraction:g} is left until the liquidation")
    else:
        info["handling"] = "traded by the strategy from its first trading decision"
    return info


def session_orders(broker: BrokerPort, session_date: date, account: str | None = None) -> list[OrderReport]:
    """Every order the broker holds for this session that carries openbell's id for it and ``account``."""
    return [o for o in broker_session_orders(broker, session_date)
            if is_ours(o.client_order_id, session_date, account=account)]


def reconcile(
    broker: BrokerPort,
    engine: Engine,
    session_date: date,
    *,
    cancel_foreign: bool = True,
    universe: Collection[str] | None = None,
) -> ReconcileReport:
    """Make Postgres agree with the broker for ``session_date`` and take ownership of the account.

    Broker positions are written into the position book; one openbell never opened is adopted
    (origin ``adopted``, closed with everything else at the liquidation), shorts and fractions included.
    Given the run's ``universe``, each adoption says what happens to it (:func:`adoption`); the symbols
    outside the universe are listed in ``adopted_left_alone``. This session's orders are
    written into ``orders``, with any fills the trade stream never delivered (recovered as
    :mod:`openbell.broker.updates` states; the book is already the broker's). Open orders that are
    not this session's openbell orders for this account (the account of ``engine``'s URL) are cancelled,
    another account's included: openbell owns the account during its session
    (``cancel_foreign=False`` leaves them, e.g. the close orders of a liquidation in progress).
    Each difference is journalled as an event.
    """
    report = ReconcileReport()
    account = account_of(engine.url)  # the state's account: another account's ids are foreign here
    positions = broker.positions()
    open_orders = broker.orders("open")
    ours = session_orders(broker, session_date, account)
    report.positions = len(positions)
    report.orders_found = len(ours)
    foreign = [o for o in open_orders if not is_ours(o.client_order_id, session_date, account=account)]
    cancelled = _cancel(broker, foreign if cancel_foreign else [])
    report.orders_kept = len(open_orders) - len(foreign)
    with engine.begin() as conn:
        _positions(conn, session_date, report, {p.symbol: p for p in positions}, universe)
        _orders(conn, session_date, report, ours)
        _cancelled(conn, session_date, report, cancelled)
        report.max_decision_seq = max(report.max_decision_seq, book.max_decision_seq(conn, session_date))
    log.info("reconcile %s: %s", session_date, report.as_dict())
    return report


def _cancel(broker: BrokerPort, foreign: list[OrderReport]) -> list[tuple[OrderReport, str | None]]:
    """Cancel each order; with why the broker refused (already filled or gone), or None."""
    cancelled: list[tuple[OrderReport, str | None]] = []
    for order in foreign:
        try:
            broker.cancel_order(order.broker_order_id)
            cancelled.append((order, None))
        except BrokerRefusal as exc:  # already filled or gone: note it, go on
            cancelled.append((order, str(exc)))
    return cancelled


def _positions(conn: Connection, session_date: date, report: ReconcileReport, at_broker: dict[str, PositionReport],
               universe: Collection[str] | None) -> None:
    """The book set to the broker's positions: adoptions and differences journalled."""
    held = book.book_positions(conn, session_date)
    for symbol, pos in sorted(at_broker.items()):
        qty, avg = pos.qty, pos.avg_entry_price
        if symbol not in held or (held[symbol][0] == 0 and held[symbol][1] != "strategy"):
            if symbol not in held:
                report.positions_adopted += 1
                report.adopted.append(symbol)
                info = adoption(symbol, qty, universe)
                if info.get("in_universe") is False:
                    report.adopted_left_alone.append(symbol)
                event(conn, session_date, "position_adopted",
                      {"symbol": symbol, "qty": qty, "avg_entry_price": avg, **info})
            else:
                report.differences += 1
                event(conn, session_date, "reconcile_difference",
                      {"symbol": symbol, "postgres_qty": 0.0, "broker_qty": qty})
            book.set_position(conn, session_date, symbol, qty, avg, "adopted")
        else:
            if abs(held[symbol][0] - qty) > 1e-9:
                report.differences += 1
                event(conn, session_date, "reconcile_difference",
                      {"symbol": symbol, "postgres_qty": held[symbol][0], "broker_qty": qty})
            book.set_position(conn, session_date, symbol, qty, avg, held[symbol][1])
    for symbol, (qty, origin) in sorted(held.items()):
        if symbol not in at_broker and qty != 0:
            report.differences += 1
            event(conn, session_date, "reconcile_difference",
                  {"symbol": symbol, "postgres_qty": qty, "broker_qty": 0.0})
            book.set_position(conn, session_date, symbol, 0.0, None, origin)


def _orders(conn: Connection, session_date: date, report: ReconcileReport, ours: list[OrderReport]) -> None:
    """This session's orders stored as the broker has them, with the fills the trade stream never delivered."""
    stored = book.stored_orders(conn, session_date)
    for order in ours:
        # a notional order (no qty at the broker) not recorded before a crash: its shares once it is final
        known = order.filled_qty if order.qty is None and order.status in book.FINAL_STATUSES else None
        row = order_row(order, session_date, "strategy", estimate=known)
        before = stored.get(order.client_order_id)
        if before != row.status:
            report.differences += 1
            event(conn, session_date, "reconcile_order",
                  {"client_order_id": order.client_order_id, "postgres_status": before, "broker_status": row.status})
        book.upsert_order(conn, row)
        if recover_fills(conn, session_date, order, move_book=False) is not None:
            report.fills_recovered += 1
        if row.decision_seq is not None:
            report.max_decision_seq = max(report.max_decision_seq, row.decision_seq)


def _cancelled(conn: Connection, session_date: date, report: ReconcileReport,
               cancelled: list[tuple[OrderReport, str | None]]) -> None:
    """The foreign orders cancelled (or found final), stored as adopted and journalled."""
    for order, error in cancelled:
        reason = "open order not placed by openbell for this session: cancelled at reconcile"
        row = order_row(order, session_date, "adopted", reason)
        row = book.OrderRow(**{**row.__dict__, "status": "canceled" if error is None else row.status,
                               "decision_seq": None, "reject_reason": error})
        book.upsert_order(conn, row)
        event(conn, session_date, "foreign_order_cancelled",
              {"client_order_id": order.client_order_id, "symbol": order.symbol, "error": error})
        if error is None:
            report.orders_cancelled += 1
            report.cancelled.append(order.client_order_id)
