"""The broker's word, between minutes: order lookups, missed fills recovered, the account synced and the
position book corrected. Broker calls run on the helper pool; what they find is applied on the loop."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from sqlalchemy import Connection

from openbell.broker import book
from openbell.broker.journal import event
from openbell.broker.reconcile import broker_session_orders
from openbell.broker.updates import recover_fills
from openbell.ports import BrokerPort, OrderReport
from openbell.trading.context import LoopContext
from openbell.trading.portfolio import Portfolio

log = logging.getLogger(__name__)

FINAL = book.FINAL_STATUSES


class BrokerSync:
    """Keeps the portfolio and the position book in line with the broker.

    ``on_absent(client_order_id, monotonic_time)`` is called on the loop when the broker answers 404 for
    an order (see :meth:`openbell.trading.dispatch.Dispatcher.order_absent`). ``describe`` is the broker's
    description of a failure, for the other chores' logs too.
    """

    def __init__(
        self,
        ctx: LoopContext,
        portfolio: Portfolio,
        *,
        broker: BrokerPort,
        on_absent: Callable[[str, float], None],
        on_equity: Callable[[float], None] | None = None,
        on_synced: Callable[[dict[str, float]], None] | None = None,
        every: int = 1,
    ) -> None:
        self._threads = ctx.threads
        self._recorder = ctx.recorder
        self._portfolio = portfolio
        self._report = ctx.report
        self._broker = broker
        self.describe = broker.describe
        self.d = ctx.d
        self._on_absent = on_absent
        self.on_equity = on_equity  # the broker's equity, on the loop, after each sync
        # the broker's positions, on the loop, after a sync applied whole (no order working)
        self.on_synced = on_synced
        self._every = max(1, every)  # decisions between two syncs of the account
        self._recovered: set[str] = set()  # execution ids of fills recovered (counted once)

    # -- on the loop ------------------------------------------------------------------------------

    def due(self, decisions: int) -> bool:
        """Whether the account is synced after the ``decisions``-th decision (every ``every``)."""
        return decisions % self._every == 0

    def stale(self, seq: int) -> list[str]:
        """The working orders two decisions or more older than decision ``seq``: the broker is asked for them."""
        return self._portfolio.stale(seq)

    def start_lookup(self, coid: str) -> None:
        """Ask the broker for one order (an update of it could not be read); no id: every order."""
        if coid:
            self._threads.submit(self.poll_orders, [coid])
        else:
            self._threads.submit(self.recover_orders)

    def start_recovery(self) -> None:
        """After the trade stream reconnected: look for the fills it missed."""
        self._threads.submit(self.recover_orders)

    def apply_sync(self, cash: float, positions: dict[str, float], changes: int | None = None) -> None:
        """The broker's cash and positions replace the portfolio's.

        A snapshot whose reads began before a fill was applied or an order was sent (``changes``, the
        portfolio's count of those when the reads began, is behind) is dropped: it would roll them back.
        While orders are working only the symbols without one are corrected, and the cash is kept (the
        snapshot may predate their fills)."""
        portfolio = self._portfolio
        if changes is not None and changes != portfolio.changes:
            log.info("a fill or an order came after this sync's reads began: the snapshot is dropped")
            self._report.syncs_dropped += 1
            return
        busy = {w.symbol for w in portfolio.working.values()}
        if busy:
            for symbol in set(portfolio.positions) | set(positions):
                if symbol not in busy:
                    qty = positions.get(symbol, 0.0)
                    if qty:
                        portfolio.positions[symbol] = qty
                    else:
                        portfolio.positions.pop(symbol, None)
            self._recorder.write(lambda conn: self._correct_book(conn, positions, skip=busy))
            return
        portfolio.cash = cash
        portfolio.positions = positions
        self._recorder.write(lambda conn: self._correct_book(conn, positions))
        if self.on_synced is not None:
            self.on_synced(positions)

    def _order_polled(self, order: OrderReport) -> None:
        """The broker's view of one order: final states end it, missed fills are recovered once."""
        portfolio = self._portfolio
        coid = order.client_order_id
        side = order.side
        ours = coid in portfolio.filled  # sent (or adopted) by this attempt: memory moves too
        cum = order.filled_qty or 0.0
        gap = 0.0
        if ours and cum > portfolio.filled.get(coid, 0.0):
            gap = portfolio.recover(coid, order.symbol, side, cum, order.filled_avg_price or 0.0)
        if order.status in FINAL:
            portfolio.order_done(coid)
        elif ours and coid in portfolio.working and order.qty is not None:
            remaining = order.qty - cum
            portfolio.working[coid].signed_qty = remaining if side == "buy" else -remaining
        elif ours and gap:  # a notional order: no qty at the broker, its estimate shrinks by the fill
            portfolio.shrink(coid, gap)

        def write(conn: Connection) -> None:
            # the position book moves with a recovered fill only for an order this attempt tracks:
            # for the others the broker sync sets the book
            found = recover_fills(conn, self.d, order, move_book=ours)
            if found is not None:
                self._recovered.add(found.execution_id)  # counted by id: a retried batch runs this again
                self._report.fills_recovered = len(self._recovered)
                log.warning("recovered %g %s of %s missed by the trade stream", found.qty, found.symbol, coid)
                event(conn, self.d, "fill_recovered", {
                    "client_order_id": coid, "execution_id": found.execution_id, "qty": found.qty,
                    "price": found.price})

        self._recorder.write(write)

    # -- on a helper thread -----------------------------------------------------------------------

    def poll_orders(self, coids: list[str]) -> None:
        """Ask the broker for each order by its client_order_id."""
        loop = self._threads.loop
        for coid in coids:
            try:
                order = self._broker.find_order(coid)
            except Exception as exc:
                log.warning("lookup of %s failed: %s", coid, self.describe(exc))
                continue
            if order is not None:
                loop.call_soon_threadsafe(self._order_polled, order)
            else:
                loop.call_soon_threadsafe(self._on_absent, coid, time.monotonic())

    def recover_orders(self) -> None:
        """After the trade stream reconnects: every order of the session, for fills it missed."""
        try:
            orders = broker_session_orders(self._broker, self.d)
        except Exception as exc:
            log.warning("order recovery after a trade-stream reconnect failed: %s", self.describe(exc))
            return
        for order in orders:
            self._threads.loop.call_soon_threadsafe(self._order_polled, order)

    def sync_account(self) -> None:
        """Read the broker's cash and positions; applied on the loop.

        The cash is read between two reads of the positions, and a snapshot whose positions moved meanwhile
        is not applied: the cash from before a fill with the positions from after it (an order this attempt
        does not track, such as the liquidation's) would misstate the equity, and could trip the loss stop.
        """
        changes = self._portfolio.changes  # read before the reads: a fill or order after it drops the snapshot
        before = self._positions()
        account = self._broker.account()
        positions = self._positions()
        if positions == before:
            self._threads.loop.call_soon_threadsafe(self.apply_sync, account.cash, positions, changes)
        else:
            log.info("positions moved while the account was read (%s, then %s): this sync is skipped", before,
                     positions)
        if self.on_equity is not None and account.equity > 0:
            self._threads.loop.call_soon_threadsafe(self.on_equity, account.equity)

    def _positions(self) -> dict[str, float]:
        return {p.symbol: p.qty for p in self._broker.positions()}

    # -- on the writer's thread -------------------------------------------------------------------

    def _correct_book(self, conn: Connection, positions: dict[str, float], skip: frozenset[str] | set[str] = frozenset()
                      ) -> None:
        """The broker wins: fills the trade stream never delivered still end up in the position book (but for
        the ``skip`` symbols, whose orders are working)."""
        held = book.book_positions(conn, self.d)
        for symbol in sorted((set(held) | set(positions)) - set(skip)):
            qty, origin = held.get(symbol, (0.0, "adopted"))
            broker_qty = positions.get(symbol, 0.0)
            if abs(qty - broker_qty) > 1e-9:
                book.set_position(conn, self.d, symbol, broker_qty, None, origin)
                event(conn, self.d, "book_corrected", {"symbol": symbol, "postgres_qty": qty, "broker_qty": broker_qty})
