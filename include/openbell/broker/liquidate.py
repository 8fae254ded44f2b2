"""End of day: cancel everything, close every position, and check the account is really flat.

A close order the broker holds (a halted symbol: the broker accepts the order and keeps it until trading
resumes) is reported with the reason the liquidation can see, and waited for until the deadline.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from psycopg2.errors import TransactionRollbackError
from sqlalchemy import Engine, text
from tenacity import retry, retry_if_exception, stop_after_attempt, wait_random

from openbell.broker import book
from openbell.broker.journal import event
from openbell.broker.rows import order_row
from openbell.broker.updates import recover_fills
from openbell.calendar import ET
from openbell.clock import MarketClock
from openbell.ports import BrokerPort, MarketDataPort, OrderReport, PositionReport, Window

log = logging.getLogger(__name__)

POLL_SECONDS = 0.25
# A market close order still working this long (market and wall time both) is held by the broker.
HELD_AFTER = timedelta(seconds=5)
HELD_AFTER_WALL = 0.5
# While only held orders remain: market time between polls (Alpaca allows 200 requests a minute).
HELD_POLL = timedelta(seconds=2)
# A symbol whose close failed is closed again after this much market time.
RETRY_AFTER = timedelta(seconds=10)
# No bar for this long before now: the symbol is not trading (halted).
NO_TRADE = timedelta(minutes=2)
LOOKBACK = timedelta(minutes=30)


@dataclass
class LiquidationReport:
    """The liquidation's outcome; ``flat`` is the broker's word, not openbell's belief.

    ``unreachable``: broker calls that failed past their retries (the liquidation asked again).
    ``held``: per symbol whose close order the broker held, ``qty``, ``client_order_id``, ``since``
    (market time), ``reason`` (e.g. ``halted: no trade since 15:49 ET``), ``halted`` (True, False or
    None when unknown) and ``resumed_at`` (when the position was closed after all, else None).
    """

    flat: bool = False
    orders_cancelled: int = 0
    close_orders: int = 0
    refusals: list[dict[str, Any]] = field(default_factory=list)
    retries: int = 0
    positions_left: dict[str, float] = field(default_factory=dict)
    open_orders_left: int = 0
    fills_recovered: int = 0
    held: dict[str, dict[str, Any]] = field(default_factory=dict)
    unreachable: int = 0
    finished_at: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def still_held(self) -> dict[str, dict[str, Any]]:
        """The held symbols not closed by the end."""
        return {s: h for s, h in self.held.items() if s in self.positions_left}


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


def halt_seen(engine: Engine, session_date: date, symbol: str) -> dict[str, Any] | None:
    """The live loop's last record of a halt of ``symbol`` from the data stream's ``statuses``
    (a ``symbol_halted`` event), unless a ``symbol_resumed`` came after it."""
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT kind, payload FROM events WHERE session_date = :d"
                 " AND kind IN ('symbol_halted', 'symbol_resumed') ORDER BY id DESC"),
            {"d": session_date},
        )
        for kind, payload in rows:
            if isinstance(payload, dict) and payload.get("symbol") == symbol:
                return payload if kind == "symbol_halted" else None
    return None


def why_held(broker: BrokerPort, data: MarketDataPort | None, symbol: str, now: datetime,
             seen: dict[str, Any] | None = None) -> tuple[str, bool | None]:
    """Why the broker holds a close order of ``symbol`` at market time ``now``: (reason, halted).

    A halt the live loop saw on the data stream (``seen``, see :func:`halt_seen`) says it best; else the
    broker's asset says whether it trades the symbol at all, and the latest bars whether the symbol
    trades now (no trade for :data:`NO_TRADE`: halted). Either answer may be missing.
    """
    if seen is not None:
        at = seen.get("market_time") or ""
        since = f" since {datetime.fromisoformat(at).astimezone(ET):%H:%M} ET" if at else ""
        return f"halted{since} ({seen.get('reason') or 'status ' + str(seen.get('code'))})", True
    try:
        if broker.asset_tradable(symbol) is False:
            return "not tradable at the broker", False
    except Exception as exc:
        log.warning("asset %s: %s", symbol, broker.describe(exc))
    if data is None:
        return "the close order has not filled (no market data to tell why)", None
    try:
        frame = data.bars([symbol], Window(now - LOOKBACK, now))
    except Exception as exc:
        log.warning("bars of %s: %s", symbol, data.describe(exc))
        return "the close order has not filled (market data unavailable)", None
    if frame.empty:
        minutes = int(LOOKBACK.total_seconds() // 60)
        return f"halted: no trade in the last {minutes} minutes", True
    last = frame["timestamp"].max().to_pydatetime()
    if now - (last + timedelta(minutes=1)) >= NO_TRADE:
        return f"halted: no trade since {last.astimezone(ET):%H:%M} ET", True
    return f"the close order has not filled although {symbol} trades", False


class _Watch:
    """Which close orders the broker holds, and when a symbol may be closed again."""

    def __init__(self, broker: BrokerPort, data: MarketDataPort | None, engine: Engine, session_date: date,
                 report: LiquidationReport) -> None:
        self.broker, self.data, self.engine, self.d, self.report = broker, data, engine, session_date, report
        self.seen: dict[str, tuple[datetime, float]] = {}  # broker order id -> first seen (market, wall)
        self.next_try: dict[str, datetime] = {}

    def held(self, now: datetime, positions: list[PositionReport], open_orders: list[OrderReport]) -> bool:
        """Note the close orders held past the grace period; True when every position left is held."""
        qty = {p.symbol: p.qty for p in positions}
        for symbol, h in self.report.held.items():
            if symbol not in qty and h["resumed_at"] is None:
                h["resumed_at"] = now.isoformat()
                log.warning("liquidation: %s closed after its hold (%s)", symbol, h["reason"])
                event(self.engine, self.d, "liquidation_resumed", {"symbol": symbol, "market_time": now.isoformat()})
        waiting = {s for s, h in self.report.held.items() if h["resumed_at"] is None}
        for o in open_orders:
            first = self.seen.setdefault(o.broker_order_id, (now, time.monotonic()))
            if o.symbol not in qty or o.symbol in waiting:
                continue
            if now - first[0] < HELD_AFTER or time.monotonic() - first[1] < HELD_AFTER_WALL:
                continue
            seen = halt_seen(self.engine, self.d, o.symbol)
            reason, halted = why_held(self.broker, self.data, o.symbol, now, seen)
            h = {"qty": qty[o.symbol], "client_order_id": o.client_order_id, "since": first[0].isoformat(),
                 "reason": reason, "halted": halted, "resumed_at": None}
            self.report.held[o.symbol] = h
            log.error("liquidation: the broker holds the close of %s %s: %s", qty[o.symbol], o.symbol, reason)
            event(self.engine, self.d, "liquidation_held", {"symbol": o.symbol, **h})
            waiting.add(o.symbol)
        return bool(qty) and set(qty) <= waiting

    def may_retry(self, symbol: str, now: datetime) -> bool:
        """Whether ``symbol`` may be closed again now (at most once per :data:`RETRY_AFTER`)."""
        if now < self.next_try.get(symbol, now):
            return False
        self.next_try[symbol] = now + RETRY_AFTER
        return True


def liquidate(
    broker: BrokerPort,
    engine: Engine,
    session_date: date,
    clock: MarketClock,
    deadline: datetime,
    market_data: MarketDataPort | None = None,
    *,
    mark_phase: bool = True,
) -> LiquidationReport:
    """Flatten the account before ``deadline`` (market time).

    Sets the session phase ``liquidating`` (the live loop then opens nothing; ``mark_phase=False`` for a
    flatten during the session, which halts the loop through the risk state instead), cancels open orders,
    closes all positions with ``cancel_orders=True``, and for each symbol the broker refuses
    (e.g. 403 qty held for orders) cancels that symbol's orders and closes it again. It polls until
    the broker reports no positions and no open orders, or the deadline passes. A close order the
    broker holds (a halted symbol) is reported in ``held`` with its reason (:func:`why_held`, from
    ``market_data`` when given) and a ``liquidation_held`` event, and waited for: it fills when
    trading resumes (a ``liquidation_resumed`` event). A broker that does not answer is asked again until
    the deadline. The close orders' fills are stored from the broker's final word on them.
    """
    report = LiquidationReport()
    if mark_phase:
        _set_phase(engine, session_date, "liquidating")
    placed = _close_everything(broker, engine, session_date, report)
    watch = _Watch(broker, market_data, engine, session_date, report)

    while True:
        try:  # open orders before positions: a position without an open order then really has no close working
            open_orders = broker.orders("open")
            positions = broker.positions()
        except Exception as exc:  # the broker out of reach past the retries: ask again until the deadline
            log.warning("liquidation: the broker did not answer (%s)", broker.describe(exc))
            report.unreachable += 1
            if clock.now() >= deadline:
                break
            time.sleep(POLL_SECONDS)
            continue
        now = clock.now()
        report.positions_left = {p.symbol: p.qty for p in positions}
        report.open_orders_left = len(open_orders)
        all_held = watch.held(now, positions, open_orders)
        if not positions and not open_orders:
            report.flat = True
            break
        if now >= deadline:
            break
        placed += _close_again(broker, engine, session_date, report, watch, positions, open_orders, now)
        time.sleep(POLL_SECONDS)
        if all_held:  # nothing to do but wait for the resumption: poll gently
            clock.sleep_until(min(now + HELD_POLL, deadline))

    refreshed = _refreshed(broker, placed)
    report.close_orders = len({o.broker_order_id for o in placed})
    report.finished_at = clock.now().isoformat()
    _record(engine, session_date, refreshed, report)
    log.info("liquidation %s: %s", session_date, report.as_dict())
    return report


def _close_everything(broker: BrokerPort, engine: Engine, session_date: date,
                      report: LiquidationReport) -> list[OrderReport]:
    """Cancel every order and close every position at once; the close orders placed (recorded)."""
    placed: list[OrderReport] = []
    try:
        report.orders_cancelled = broker.cancel_all()
        placed, report.refusals = broker.close_all()
    except Exception as exc:  # each symbol is closed on its own afterwards
        log.warning("liquidation: cancelling and closing everything failed: %s", broker.describe(exc))
        report.unreachable += 1
    _record_close_orders(engine, session_date, placed)
    if report.refusals:
        event(engine, session_date, "liquidation_refused", {"refusals": report.refusals})
    return placed


def _close_again(broker: BrokerPort, engine: Engine, session_date: date, report: LiquidationReport,
                 watch: _Watch, positions: list[PositionReport], open_orders: list[OrderReport],
                 now: datetime) -> list[OrderReport]:
    """Each position without a working close order (refused before, or its close died): its orders cancelled
    and closed again; the new close orders (recorded)."""
    placed: list[OrderReport] = []
    pending = {o.symbol for o in open_orders}
    for p in positions:
        if p.symbol in pending or not watch.may_retry(p.symbol, now):
            continue  # a close order is working (or was just sent): wait for it
        try:
            report.retries += 1
            order = broker.close_position(p.symbol)
            if order is not None:
                placed.append(order)
                _record_close_orders(engine, session_date, [order])
        except Exception as exc:
            log.warning("close %s refused: %s", p.symbol, broker.describe(exc))
            for o in open_orders:
                if o.symbol == p.symbol:
                    try:
                        broker.cancel_order(o.broker_order_id, retry=False)
                    except Exception as cexc:
                        log.warning("cancel %s failed: %s", o.client_order_id, broker.describe(cexc))
    return placed


def _refreshed(broker: BrokerPort, placed: list[OrderReport]) -> list[OrderReport]:
    """The broker's final word on each close order (those it cannot give are left out, logged)."""
    refreshed: list[OrderReport] = []
    for order in placed:
        try:
            refreshed.append(broker.get_order(order.broker_order_id))
        except Exception as exc:
            log.warning("could not refresh %s: %s", order.client_order_id, broker.describe(exc))
    return refreshed


@retry(retry=retry_if_exception(lambda exc: isinstance(getattr(exc, "orig", None), TransactionRollbackError)),
       stop=stop_after_attempt(5), wait=wait_random(0.05, 0.5), reraise=True)
def _record(engine: Engine, session_date: date, refreshed: list[OrderReport], report: LiquidationReport) -> None:
    """Store the close orders' fills, zero the book when flat, journal the liquidation: one transaction,
    run again whole when Postgres picks it as a deadlock's victim (the live loop's writer may be moving
    the same positions)."""
    recovered = 0
    with engine.begin() as conn:
        # the close orders' fills, if no trade stream recorded them (the live loop gone, or late):
        # once each whatever the order of arrival (see openbell.broker.updates); the book is set below
        for order in refreshed:
            recovered += recover_fills(conn, session_date, order, move_book=False) is not None
        if report.flat:
            for symbol, (qty, origin) in sorted(book.book_positions(conn, session_date).items()):
                if qty != 0:
                    book.set_position(conn, session_date, symbol, 0.0, None, origin)
        event(conn, session_date, "liquidation", {**report.as_dict(),
                                                  "fills_recovered": report.fills_recovered + recovered})
    report.fills_recovered += recovered
