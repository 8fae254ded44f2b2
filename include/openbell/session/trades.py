"""Trade updates in: fills applied to the portfolio on the loop, the update parsed and stored off it.

An update alpaca-py cannot parse is kept as a ``trade_update_unparsed`` event and its order is asked of
the broker, whose answer stores the fill (see :mod:`openbell.session.sync`): a fill is never lost.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import date
from typing import Any

from alpaca.trading.models import TradeUpdate
from sqlalchemy import Connection

from openbell.broker import book
from openbell.broker.journal import event
from openbell.broker.updates import apply_trade_update
from openbell.session.portfolio import Portfolio
from openbell.session.recording import Recorder
from openbell.session.report import SessionReport
from openbell.session.threads import Threads

log = logging.getLogger(__name__)

FINAL = book.FINAL_STATUSES


def json_key(data: dict[str, Any]) -> str:
    """A stable identity of a JSON-able message."""
    return json.dumps(data, sort_keys=True, default=str)


def _opt(value: Any) -> float | None:
    return None if value is None or value == "" else float(value)


class TradeUpdates:
    """Applies the trade stream's updates; ``lookup(client_order_id)`` asks the broker for an order (on
    the loop) when an update of it could not be read."""

    def __init__(
        self,
        threads: Threads,
        recorder: Recorder,
        portfolio: Portfolio,
        working_since: dict[str, int],
        report: SessionReport,
        *,
        session_date: date,
        lookup: Callable[[str], None],
    ) -> None:
        self._threads = threads
        self._recorder = recorder
        self._portfolio = portfolio
        self._working_since = working_since
        self._report = report
        self.d = session_date
        self._lookup = lookup
        self._unparsed: set[str] = set()  # trade updates alpaca-py refused (counted once)

    async def on_update(self, msg: dict[str, Any]) -> None:
        """One trade update as the stream sent it (a dict: parsing it into alpaca-py's model is left
        to the writer's thread, away from the loop while orders are going out)."""
        data = msg.get("data") or {}
        order = data.get("order") or {}
        coid = str(order.get("client_order_id") or "")
        name, status = str(data.get("event")), str(order.get("status"))
        cum = _opt(order.get("filled_qty"))
        if name in ("fill", "partial_fill") and data.get("execution_id") is not None:
            qty = _opt(data.get("qty"))
            price = _opt(data.get("price"))
            if self._portfolio.on_fill(
                str(data["execution_id"]),
                coid,
                str(order.get("symbol") or ""),
                str(order.get("side")),
                qty if qty is not None else cum or 0.0,
                price if price is not None else _opt(order.get("filled_avg_price")) or 0.0,
                _opt(data.get("position_qty")),
                (_opt(order.get("qty")) or 0.0) - (cum or 0.0),
                status in FINAL,
                cum,
            ):
                self._report.fills += 1
        if status in FINAL:
            self._portfolio.order_done(coid)
            self._working_since.pop(coid, None)
        self._recorder.write(lambda conn: self._store(conn, data, coid))

    def _store(self, conn: Connection, data: dict[str, Any], coid: str) -> None:
        """On the writer's thread: parse, then write. An update alpaca-py refuses is kept as an event and
        its order asked of the broker, whose word then stores the fill: a fill is never lost."""
        try:
            update = TradeUpdate(**data)
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"[:2000]
            # counted by identity: a batch retried after an outage runs this again
            self._unparsed.add(json_key(data))
            self._report.trade_updates_unparsed = len(self._unparsed)
            log.warning("trade update for %r not parsed: %s", coid, reason.splitlines()[0])
            event(conn, self.d, "trade_update_unparsed", {"client_order_id": coid, "error": reason, "data": data})
            self._threads.loop.call_soon_threadsafe(self._lookup, coid)
            return
        apply_trade_update(conn, self.d, update)
