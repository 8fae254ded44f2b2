"""Orders out: a decision's orders sent together, their answers recorded, unknown outcomes settled.

Right before orders leave, the send gate (:meth:`Dispatcher.send_blocked`) holds them once the session
is liquidating or the market time reaches the trading cut-off. An order whose outcome is unknown and
that the broker still does not know after ``UNSENT_GRACE`` counts as never sent: the next decision that
still wants it sends it again under its own id, otherwise it ends as ``not_sent``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from datetime import date, datetime, timedelta

from openbell.broker import book
from openbell.broker.ids import client_order_id
from openbell.broker.rows import order_row
from openbell.clock import MarketClock
from openbell.ports import SubmitResult
from openbell.session.phasewatch import PhaseWatch
from openbell.session.portfolio import OrderIntent, Portfolio
from openbell.session.recording import Recorder
from openbell.session.report import SessionReport
from openbell.session.sender import OrderJob, OrderSender, Sent
from openbell.session.threads import Threads

log = logging.getLogger(__name__)

FINAL = book.FINAL_STATUSES
UNSENT_GRACE = 2.0  # wall seconds the broker may take to show an order before it counts as never sent
SEND_MARGIN = timedelta(seconds=2)  # market time: no order leaves this close to the liquidation

Placed = list[tuple[str, OrderIntent]]  # (client_order_id, intent) of the orders a decision sent


class Dispatcher:
    """Sends a decision's orders through the :class:`OrderSender` and settles what comes back.

    ``liquidating`` (set once the session is liquidating or closed) and ``trade_until`` (the market
    time no order may reach) gate every send. ``latencies`` and ``answered`` collect, in ms, the time
    from the bar that completed a minute to its order handed to a worker's client, and to the answer.
    """

    sender: OrderSender  # attached when the session runs

    def __init__(
        self,
        threads: Threads,
        recorder: Recorder,
        portfolio: Portfolio,
        working_since: dict[str, int],
        report: SessionReport,
        *,
        session_date: date,
        universe: Sequence[str],
        min_notional: float,
        clock: MarketClock,
        phase: PhaseWatch,
        trade_until: datetime,
    ) -> None:
        self._threads = threads
        self._recorder = recorder
        self._portfolio = portfolio
        self._working_since = working_since
        self._report = report
        self.d = session_date
        self._universe = universe
        self._min_notional = min_notional
        self._clock = clock
        self._phase = phase
        self.trade_until = trade_until
        self.liquidating = False
        self.latencies: list[float] = []  # bar that completed the minute -> order handed to a worker's client
        self.answered: list[float] = []  # the same bar -> the broker's answer to the order
        self._absent: dict[str, float] = {}  # client_order_id -> when the broker first answered 404
        self._resend: dict[tuple[str, str], str] = {}  # (symbol, side) -> an order found never sent

    # -- on the loop ------------------------------------------------------------------------------

    def place(
        self, seq: int, weights: dict[str, float], notes: list[str], ready: float | None, *, trade: bool
    ) -> Placed:
        """Send the orders that move the account to ``weights`` (when ``trade``); returns them with their
        ids and appends why any was deferred or held to ``notes``."""
        report, portfolio = self._report, self._portfolio
        intents: list[OrderIntent] = []
        deferred: list[str] = []
        if trade:
            intents = portfolio.intents(weights, self._universe, self._min_notional, deferred)
        if deferred:
            report.orders_deferred += len(deferred)
            notes.extend(f"{s}: order deferred, an opposite-side order is working" for s in deferred)
        held = self.send_blocked() if intents else None  # checked right before the orders leave
        if held is not None:
            report.orders_held += len(intents)
            notes.append(f"{len(intents)} order(s) held: {held}")
            intents = []
        orders: Placed = []
        jobs: list[tuple[OrderJob, tuple[int, OrderIntent, float | None]]] = []
        for intent in intents:
            # an order found never sent goes again under its own id: should the broker have it after
            # all, it refuses the id and the submit path returns the existing order
            resent = self._resend.pop((intent.symbol, intent.side), None)
            coid = resent or client_order_id(self.d, seq, intent.symbol)
            report.orders_resent += resent is not None
            portfolio.add_working(coid, intent)
            self._working_since[coid] = seq
            orders.append((coid, intent))
            jobs.append((OrderJob(coid, intent.symbol, intent.qty, intent.side), (seq, intent, ready)))
        if jobs:
            self.sender.submit_all(jobs)
        report.orders += len(intents)
        self._drop_unsent()
        return orders

    def market_now(self) -> datetime:
        """Market time from the clock's last mapping (no I/O on the loop); the clock itself without one."""
        mapping = getattr(self._clock, "mapping", None)
        return mapping.market_at(time.time()) if mapping is not None else self._clock.now()

    def send_blocked(self) -> str | None:
        """Why no order may leave now: the session is liquidating, or the market time is at the cut-off."""
        if self.liquidating or self._phase.winding_down:
            return "the session is liquidating"
        now = self.market_now()
        if now >= self.trade_until - SEND_MARGIN:
            return f"market time {now.isoformat()} is at the trading cut-off {self.trade_until.isoformat()}"
        return None

    def _drop_unsent(self) -> None:
        """Orders found never sent that this decision did not want again: final, as never sent."""
        dropped, self._resend = list(self._resend.values()), {}
        for coid in dropped:
            self._report.orders_not_sent += 1
            self._recorder.not_sent(coid)

    def on_submitted(self, seq: int, intent: OrderIntent, result: SubmitResult) -> None:
        """The broker's answer to one order (or why there is none): recorded, a final order ends."""
        coid = result.client_order_id
        if result.order is not None:
            row = order_row(result.order, self.d, "strategy", f"target weight {intent.target_weight:.4f}")
            if result.order.status in FINAL:
                self._portfolio.order_done(coid)
        else:
            self._report.rejected += int(result.outcome == "rejected")
            if result.outcome == "rejected":
                self._portfolio.order_done(coid)
                self._working_since.pop(coid, None)
            row = book.OrderRow(
                client_order_id=coid,
                session_date=self.d,
                symbol=intent.symbol,
                side=intent.side,
                qty=intent.qty,
                status="rejected" if result.outcome == "rejected" else "unknown",
                decision_seq=seq,
                reason=f"target weight {intent.target_weight:.4f}",
                reject_reason=result.reason,
            )
            self._recorder.event("order_rejected", {
                "client_order_id": coid,
                "outcome": result.outcome,
                "reason": result.reason,
                "http_status": result.http_status,
            })
        self._recorder.order(row)

    def order_absent(self, coid: str, at: float) -> None:
        """The broker answered 404 for an order still counted as working. Once that has lasted
        UNSENT_GRACE (the broker may not have indexed it yet) the order counts as never sent: it no
        longer holds back the other side nor the broker sync, and the next decision sends it again
        under the same id if it still wants it (else it is recorded as not_sent)."""
        working = self._portfolio.working.get(coid)
        if working is None:
            self._absent.pop(coid, None)
            return
        first = self._absent.setdefault(coid, at)
        if at - first < UNSENT_GRACE:
            return
        self._absent.pop(coid, None)
        self._portfolio.order_done(coid)
        self._working_since.pop(coid, None)
        self._resend[(working.symbol, working.side)] = coid
        log.warning("%s: unknown to the broker %.1f s after an unknown outcome; counted as never sent", coid,
                    at - first)
        self._recorder.event("order_not_at_broker", {"client_order_id": coid, "absent_seconds": round(at - first, 3)})

    # -- on a sender's reader thread --------------------------------------------------------------

    def on_sent(self, sent: Sent) -> None:
        """Time the order from its minute's last bar, hand its answer to the loop."""
        seq, intent, ready = sent.tag
        if ready is not None and not math.isnan(sent.sent_at):
            self.latencies.append((sent.sent_at - ready) * 1000.0)
            self.answered.append((sent.answered_at - ready) * 1000.0)
        self._threads.loop.call_soon_threadsafe(self.on_submitted, seq, intent, sent.result)
