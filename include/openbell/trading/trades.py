"""Trade updates in: fills applied to the portfolio on the loop, the update read and stored off it.

An update the adapter cannot read (:class:`~openbell.ports.UnreadableUpdate`) is kept as a
``trade_update_unparsed`` event and its order is asked of the broker, whose answer stores the fill (see
:mod:`openbell.trading.sync`): a fill is never lost.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection

from openbell.broker import book
from openbell.broker.journal import event
from openbell.broker.updates import apply_trade_update
from openbell.ports import TradeNotice, TradeReport, UnreadableUpdate
from openbell.trading.context import LoopContext
from openbell.trading.portfolio import Fill, Portfolio

log = logging.getLogger(__name__)

FINAL = book.FINAL_STATUSES


def json_key(data: Any) -> str:
    """A stable identity of a JSON-able message."""
    return json.dumps(data, sort_keys=True, default=str)


class TradeUpdates:
    """Applies the trade stream's updates. ``read(raw)`` turns a notice's raw update into a report (off the
    loop); ``lookup(client_order_id)`` asks the broker for an order (on the loop) when an update of it could
    not be read."""

    def __init__(
        self,
        ctx: LoopContext,
        portfolio: Portfolio,
        *,
        read: Callable[[Any], TradeReport],
        lookup: Callable[[str], None],
    ) -> None:
        self._threads = ctx.threads
        self._recorder = ctx.recorder
        self._portfolio = portfolio
        self._report = ctx.report
        self.d = ctx.d
        self._read = read
        self._lookup = lookup
        self._unparsed: set[str] = set()  # trade updates the adapter could not read (counted once)

    def on_update(self, n: TradeNotice) -> None:
        """One trade update as the stream noticed it (reading it into a report is left to the writer's
        thread, away from the loop while orders are going out)."""
        coid, execution_id = n.client_order_id, n.execution_id
        if n.event in ("fill", "partial_fill") and execution_id is not None and self._portfolio.on_fill(Fill(
            execution_id, coid, n.symbol, n.side,
            qty=n.qty if n.qty is not None else n.filled_qty or 0.0,
            price=n.price if n.price is not None else n.filled_avg_price or 0.0,
            position_qty=n.position_qty,
            remaining=None if n.order_qty is None else n.order_qty - (n.filled_qty or 0.0),
            final=n.status in FINAL,
            cum_filled=n.filled_qty,
        )):
            self._report.fills += 1
        if n.status in FINAL:
            self._portfolio.order_done(coid)
        self._recorder.write(lambda conn: self._store(conn, n))

    def _store(self, conn: Connection, n: TradeNotice) -> None:
        """On the writer's thread: read, then write. An update the adapter cannot read is kept as an event
        and its order asked of the broker, whose word then stores the fill: a fill is never lost."""
        try:
            update = self._read(n.raw)
        except UnreadableUpdate as exc:
            reason = str(exc)[:2000]
            # counted by identity: a batch retried after an outage runs this again
            self._unparsed.add(json_key(n.raw))
            self._report.trade_updates_unparsed = len(self._unparsed)
            log.warning("trade update for %r not parsed: %s", n.client_order_id, reason.splitlines()[0])
            event(conn, self.d, "trade_update_unparsed",
                  {"client_order_id": n.client_order_id, "error": reason, "data": n.raw})
            self._threads.loop.call_soon_threadsafe(self._lookup, n.client_order_id)
            return
        apply_trade_update(conn, self.d, update)
