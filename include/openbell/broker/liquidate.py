"""End of day: cancel everything, close every position, and check the account is really flat."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import Engine

from openbell.broker import book
from openbell.broker.journal import event
from openbell.broker.rows import order_row
from openbell.broker.updates import recover_fills
from openbell.clock import MarketClock
from openbell.ports import BrokerPort, OrderReport

log = logging.getLogger(__name__)

POLL_SECONDS = 0.25


@dataclass
class LiquidationReport:
    """The liquidation's outcome; ``flat`` is the broker's word, not openbell's belief."""

    flat: bool = False
    orders_cancelled: int = 0
    close_orders: int = 0
    refusals: list[dict[str, Any]] = field(default_factory=list)
    retries: int = 0
    positions_left: dict[str, float] = field(default_factory=dict)
    open_orders_left: int = 0
    fills_recovered: int = 0
    finished_at: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _set_phase(engine: Engine, session_date: date, phase: str) -> None:
    from openbell.store.sessions import set_phase

    set_phase(engine, session_date, phase)


def _record_close_orders(engine: Engine, session_date: date, orders: list[OrderReport]) -> None:
    if not orders:
        return
    with engine.begin() as conn:
        for order in orders:
            book.upsert_order(conn, order_row(order, session_date, "liquidation", "end-of-day liquidation"))


def holdings(broker: BrokerPort) -> tuple[dict[str, float], int]:
    """The broker's positions (symbol: signed qty) and how many of its orders are open."""
    positions = broker.positions()
    open_orders = broker.orders("open")
    return {p.symbol: p.qty for p in positions}, len(open_orders)


def liquidate(
    broker: BrokerPort, engine: Engine, session_date: date, clock: MarketClock, deadline: datetime
) -> LiquidationReport:
    """Flatten the account before ``deadline`` (market time).

    Sets the session phase ``liquidating`` (the live loop then opens nothing), cancels open orders,
    closes all positions with ``cancel_orders=True``, and for each symbol the broker refuses
    (e.g. 403 qty held for orders) cancels that symbol's orders and closes it again. It polls until
    the broker reports no positions and no open orders, or the deadline passes. The close orders'
    fills are stored from the broker's final word on them.
    """
    report = LiquidationReport()
    _set_phase(engine, session_date, "liquidating")
    report.orders_cancelled = broker.cancel_all()
    placed, report.refusals = broker.close_all()
    _record_close_orders(engine, session_date, placed)
    if report.refusals:
        event(engine, session_date, "liquidation_refused", {"refusals": report.refusals})

    while True:
        positions = broker.positions()
        open_orders = broker.orders("open")
        report.positions_left = {p.symbol: p.qty for p in positions}
        report.open_orders_left = len(open_orders)
        if not positions and not open_orders:
            report.flat = True
            break
        if clock.now() >= deadline:
            break
        pending = {o.symbol for o in open_orders}
        for p in positions:
            if p.symbol in pending:
                continue  # a close order is working; wait for it
            try:  # refused before, or its close order died: cancel and close this symbol again
                order = broker.close_position(p.symbol)
                report.retries += 1
                if order is not None:
                    placed.append(order)
                    _record_close_orders(engine, session_date, [order])
            except Exception as exc:
                report.retries += 1
                log.warning("close %s refused: %s", p.symbol, broker.describe(exc))
                for o in open_orders:
                    if o.symbol == p.symbol:
                        try:
                            broker.cancel_order(o.broker_order_id, retry=False)
                        except Exception as cexc:
                            log.warning("cancel %s failed: %s", o.client_order_id, broker.describe(cexc))
        time.sleep(POLL_SECONDS)

    refreshed: list[OrderReport] = []
    for order in placed:
        try:
            refreshed.append(broker.get_order(order.broker_order_id))
        except Exception as exc:
            log.warning("could not refresh %s: %s", order.client_order_id, broker.describe(exc))
    report.close_orders = len({o.broker_order_id for o in placed})
    report.finished_at = clock.now().isoformat()
    with engine.begin() as conn:
        # the close orders' fills, if no trade stream recorded them (the live loop gone, or late):
        # once each whatever the order of arrival (see openbell.broker.updates); the book is set below
        for order in refreshed:
            report.fills_recovered += recover_fills(conn, session_date, order, move_book=False) is not None
        if report.flat:
            for symbol, (qty, origin) in book.book_positions(conn, session_date).items():
                if qty != 0:
                    book.set_position(conn, session_date, symbol, 0.0, None, origin)
        event(conn, session_date, "liquidation", report.as_dict())
    log.info("liquidation %s: %s", session_date, report.as_dict())
    return report
