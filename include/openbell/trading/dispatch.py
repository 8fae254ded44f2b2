"""Orders out: a decision's orders sent together, their answers recorded, unknown outcomes settled.

Right before orders leave, the send gate (:class:`openbell.risk.gate.SendGate`) decides whether each may;
this module records what it held. An order whose outcome is unknown and that the broker still does not know
after ``UNSENT_GRACE`` counts as never sent: the next decision that still wants it sends it again under its
own id, otherwise it ends as ``not_sent``.

A refused order is recorded with the broker's message, code and kind of refusal and never sent again in a
loop: a symbol and side refused as not tradable or not fractionable is barred at the gate for the rest of
the session, so are the short sales of a symbol whose short sale was refused (its closes still leave), a
blocked account closes the gate, a wash trade is left to the next decision, and an order too large for the
buying power is resized once (:meth:`Dispatcher.on_submitted`). Buys are scaled to the buying
power left before they reach the gate. Once the loss stop has tripped (the risk owner's ``flattening``) each
decision closes every universe position in full instead of following the targets.

Every order leaves with the trading cut-off as its deadline: a worker that cannot send it before then, or
holds it when the gate closes, answers ``not_sent`` (recorded so, with the reason), as it does for a key the
broker refuses (the gate's ``credentials_refused``: no further order, and the attempt fails).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import replace
from datetime import datetime

from openbell.broker import book
from openbell.broker.ids import client_order_id, is_resized, resized_order_id
from openbell.broker.rows import order_row
from openbell.clock import cached_wall_at
from openbell.policy import OrderPolicy
from openbell.ports import Refusal, SubmitResult
from openbell.risk.gate import Held, SendGate, closed_in_worker
from openbell.trading.context import LoopContext
from openbell.trading.portfolio import OrderIntent, Portfolio
from openbell.trading.sender import OrderJob, OrderSender, Sent

log = logging.getLogger(__name__)

FINAL = book.FINAL_STATUSES
UNSENT_GRACE = 2.0  # wall seconds the broker may take to show an order before it counts as never sent
BP_CUSHION = 0.01  # share of the buying power left unused by buys scaled before sending (prices move)
RESIZE_SHARE = 0.97  # share of the broker's buying power a resized order may take (3% short buffer)
BARRING: tuple[Refusal, ...] = ("not_tradable", "not_fractionable")  # no second order this session

Placed = list[tuple[str, OrderIntent]]  # (client_order_id, intent) of the orders a decision sent


class Dispatcher:
    """Sends a decision's orders through the :class:`OrderSender` and settles what comes back; ``gate``
    decides whether each may leave. ``latencies`` and ``answered`` collect, in ms, the time from the bar
    that completed a minute to its order handed to a worker's client, and to the answer.
    """

    sender: OrderSender  # attached when the session runs

    def __init__(self, ctx: LoopContext, portfolio: Portfolio, *, policy: OrderPolicy, gate: SendGate) -> None:
        self._threads = ctx.threads
        self._recorder = ctx.recorder
        self._portfolio = portfolio
        self._report = ctx.report
        self.d, self._account = ctx.d, ctx.account
        self._universe = ctx.universe
        self._min_notional = policy.min_notional
        self.policy = policy
        self.gate = gate
        self._clock = ctx.clock
        self.latencies: list[float] = []  # bar that completed the minute -> order handed to a worker's client
        self.answered: list[float] = []  # the same bar -> the broker's answer to the order
        self._absent: dict[str, float] = {}  # client_order_id -> when the broker first answered 404
        self._resend: dict[tuple[str, str], str] = {}  # (symbol, side) -> an order found never sent
        self._resized: set[str] = set()  # orders refused for buying power and already resized
        self._notes: list[str] = []  # what became of earlier orders, for the next decision's notes
        self._bp_asked = False  # the broker was asked for the buying power
        self._sends = 0  # hand-overs to the sender: a buying power read while one happened is stale

    # -- on the loop ------------------------------------------------------------------------------

    def place(
        self, seq: int, weights: dict[str, float], notes: list[str], ready: float | None, *, trade: bool
    ) -> Placed:
        """Send the orders that move the account to ``weights`` (when ``trade``); returns them with their
        ids and appends why any was deferred or held to ``notes``."""
        report, portfolio = self._report, self._portfolio
        if self._notes:
            notes.extend(self._notes)
            self._notes.clear()
        intents: list[OrderIntent] = []
        deferred: list[str] = []
        if trade:
            intents = (self._closes(deferred) if self.gate.risk.flattening else
                       portfolio.intents(weights, self._universe, self._min_notional, deferred, policy=self.policy))
        if deferred:
            report.orders_deferred += len(deferred)
            notes.extend(f"{s}: order deferred, an opposite-side order is working" for s in deferred)
        now = self.market_now()
        if intents and self.gate.closed(now) is None:  # buys fit the buying power left
            intents = self._fit(intents, notes)
        if intents:  # the gate, right before the orders leave
            intents, held = self.gate.admit(intents, prices=portfolio.prices, holding=portfolio.expected, now=now)
            self._held(held, notes, seq)
        orders: Placed = []
        jobs: list[tuple[OrderJob, tuple[int, OrderIntent, float | None]]] = []
        for intent in intents:
            # an order found never sent goes again under its own id: should the broker have it after
            # all, it refuses the id and the submit path returns the existing order
            resent = self._resend.pop((intent.symbol, intent.side), None)
            coid = resent or client_order_id(self.d, seq, intent.symbol, self._account)
            report.orders_resent += resent is not None
            portfolio.add_working(coid, intent, seq)
            orders.append((coid, intent))
            jobs.append((self._job(coid, intent), (seq, intent, ready)))
        if jobs:
            self._sends += 1
            self.sender.submit_all(jobs)
        report.orders += len(intents)
        self._drop_unsent()
        return orders

    def _job(self, coid: str, intent: OrderIntent) -> OrderJob:
        """The worker's job for ``intent``: sent no later than the trading cut-off, else not at all."""
        cut_off = self.gate.deadline(cached_wall_at(self._clock, self.gate.trade_until))
        return OrderJob(coid, intent.symbol, intent.qty, intent.side, cut_off, intent.limit_price, intent.notional)

    def _held(self, held: list[Held], notes: list[str], seq: int) -> None:
        """What the gate held, counted in the report, noted in the decision; a pre-trade limit's refusal is
        logged and journaled as an ``order_refused`` event."""
        report = self._report
        closed = [h for h in held if h.rule == "closed"]
        if closed:
            report.orders_held += len(closed)
            notes.append(f"{len(closed)} order(s) held: {closed[0].note}")
        reducing = [h.intent for h in held if h.rule == "reducing"]
        if reducing:
            report.orders_held += len(reducing)
            what = ", ".join(f"{i.symbol} {i.side}" for i in reducing)
            notes.append(f"{len(reducing)} order(s) held: the risk state is REDUCING, they open or add ({what})")
        for h in held:
            if h.rule == "symbol_halted":
                report.orders_halted += 1
            elif h.rule == "barred":
                report.orders_barred += 1
            elif h.refused is not None:
                r = h.refused
                report.orders_refused_by_limit[r.limit] = report.orders_refused_by_limit.get(r.limit, 0) + 1
                log.warning("%s (decision %d)", h.note, seq)
                self._recorder.event("order_refused", {
                    "symbol": r.intent.symbol, "side": r.intent.side, "qty": r.intent.qty, "limit": r.limit,
                    "value": round(r.value, 6), "bound": r.bound, "decision_seq": seq,
                })
            if h.rule in ("symbol_halted", "barred", "limit"):
                notes.append(h.note)

    def market_now(self) -> datetime:
        """Market time from the clock's last mapping (no I/O on the loop); the clock itself without one."""
        mapping = getattr(self._clock, "mapping", None)
        return mapping.market_at(time.time()) if mapping is not None else self._clock.now()

    def _closes(self, deferred: list[str]) -> list[OrderIntent]:
        """Orders closing every universe position in full (with what its working orders will add), whatever
        their size; a symbol with an order working on the other side is deferred to the next decision."""
        portfolio = self._portfolio
        holdings = {s: q for s in self._universe if abs(q := portfolio.expected(s)) > 1e-9}
        intents: list[OrderIntent] = []
        for i in self.policy.close_all(holdings):
            if portfolio.working_against(i.symbol, i.side):
                deferred.append(i.symbol)
            else:
                intents.append(i)
        return intents

    def _fit(self, intents: list[OrderIntent], notes: list[str]) -> list[OrderIntent]:
        """Buys scaled to the buying power left (:meth:`OrderPolicy.fit`); unchanged while it is unknown
        (the broker is asked once, off the loop)."""
        budget = self._portfolio.buying_power()
        if budget is None:
            if not self._bp_asked and not self._portfolio.working:
                self._bp_asked = self._threads.submit(self.read_buying_power, self._sends)
            return intents
        fitted, scaled = self.policy.fit(intents, self._portfolio.prices, budget * (1.0 - BP_CUSHION))
        if not scaled:
            return intents
        self._report.orders_scaled += len(scaled)
        notes.extend(scaled)
        return list(fitted)

    def _drop_unsent(self) -> None:
        """Orders found never sent that this decision did not want again: final, as never sent."""
        dropped, self._resend = list(self._resend.values()), {}
        for coid in dropped:
            self._report.orders_not_sent += 1
            self._recorder.not_sent(coid)

    def on_submitted(self, seq: int, intent: OrderIntent, result: SubmitResult) -> None:
        """The broker's answer to one order (or why there is none): recorded, a final order ends."""
        coid = result.client_order_id
        if result.outcome == "not_sent":
            self._not_sent(seq, intent, result)
            return
        if result.order is not None:
            row = order_row(result.order, self.d, "strategy", f"target weight {intent.target_weight:.4f}", intent.qty)
            if result.order.status in FINAL:
                self._portfolio.order_done(coid)
        else:
            kind: Refusal | None = None
            if result.outcome == "rejected":
                self._portfolio.order_done(coid)
                kind = self._refused(intent, result)
            row = book.OrderRow(
                client_order_id=coid,
                session_date=self.d,
                symbol=intent.symbol,
                side=intent.side,
                qty=intent.qty, notional=intent.notional,
                status="rejected" if result.outcome == "rejected" else "unknown",
                decision_seq=seq,
                reason=f"target weight {intent.target_weight:.4f}",
                reject_reason=result.reason,
            )
            self._recorder.event("order_rejected", {
                "client_order_id": coid, "outcome": result.outcome, "reason": result.reason,
                "http_status": result.http_status, "code": result.code, "refusal": kind,
            })
            if kind == "buying_power":
                self._recorder.order(row)
                self._resize_once(seq, intent, result)
                return
        self._recorder.order(row)

    def _not_sent(self, seq: int, intent: OrderIntent, result: SubmitResult) -> None:
        """An order that never reached the broker: its deadline (the trading cut-off) passed in the worker, the
        send gate closed while the worker held it, or the broker refused the credentials (no order can go: the
        attempt fails, see :mod:`openbell.trading.live`)."""
        coid = result.client_order_id
        self._portfolio.order_done(coid)
        report = self._report
        report.orders_not_sent += 1
        if result.refusal == "credentials":
            if self.gate.credentials_refused is None:
                self.gate.refuse_credentials(result.reason or "credentials refused")
                report.credentials_refused = self.gate.credentials_refused
                log.error("THE BROKER REFUSED THE CREDENTIALS on %s (%s): no new order; this attempt fails",
                          coid, result.reason)
        else:
            if closed_in_worker(result.reason):
                report.orders_gate_closed += 1
            else:
                report.orders_past_deadline += 1
            log.warning("%s: not sent, %s", coid, result.reason)
        self._notes.append(f"{intent.symbol}: {intent.side} of {intent.qty:g} not sent ({result.reason})")
        self._recorder.order(book.OrderRow(
            client_order_id=coid, session_date=self.d, symbol=intent.symbol, side=intent.side, qty=intent.qty,
            notional=intent.notional, status="not_sent", decision_seq=seq,
            reason=f"target weight {intent.target_weight:.4f}", reject_reason=result.reason))
        self._recorder.event("order_not_sent", {"client_order_id": coid, "reason": result.reason,
                                                "http_status": result.http_status, "refusal": result.refusal})

    def _refused(self, intent: OrderIntent, result: SubmitResult) -> Refusal:
        """Count a refusal by kind and act on it: bar the symbol and side, or stop every new order."""
        report = self._report
        kind: Refusal = result.refusal or "other"
        report.rejected += 1
        report.rejections_by_reason[kind] = report.rejections_by_reason.get(kind, 0) + 1
        what = f"{intent.symbol}: {intent.side} of {intent.qty:g} refused by the broker ({kind}: {result.reason})"
        if kind in BARRING:
            self.gate.bar(intent.symbol, intent.side, f"{kind}: {result.reason}")
            what += "; no such order again this session"
        elif kind == "not_shortable":
            self.gate.bar_shorts(intent.symbol, f"{kind}: {result.reason}")
            what += "; no short sale of it again this session"
        elif kind == "trading_blocked" and self.gate.trading_blocked is None:
            self.gate.block(result.reason or kind)
            report.trading_blocked = self.gate.trading_blocked
            log.error("THE BROKER BLOCKS TRADING ON THE ACCOUNT (%s): no new order this session", result.reason)
            self._recorder.event("trading_blocked", {"client_order_id": result.client_order_id,
                                                     "reason": result.reason, "code": result.code})
        elif kind == "wash_trade":
            what += "; decided again on the next minute"
        log.warning("%s (%s)", what, result.client_order_id)
        self._notes.append(what)
        return kind

    def _resize_once(self, seq: int, intent: OrderIntent, result: SubmitResult) -> None:
        """An order refused as too large for the buying power goes once more, smaller, under an id derived
        from the first; a resized order refused again is not."""
        coid = result.client_order_id
        if is_resized(coid) or coid in self._resized:
            self._notes.append(f"{intent.symbol}: the resized {intent.side} was refused too; not sent again")
            return
        self._resized.add(coid)
        if result.buying_power is not None:
            self._resize(seq, intent, coid, result.buying_power)
        elif not self._threads.submit(self._read_for_resize, seq, intent, coid):
            self._not_resized(intent, coid, "the session is closing")

    def _resize(self, seq: int, intent: OrderIntent, coid: str, available: float | None) -> None:
        """Send ``intent`` again, for what ``available`` (the broker's buying power) pays for."""
        portfolio = self._portfolio
        if available is None:
            self._not_resized(intent, coid, "the broker's buying power is unknown")
            return
        if not portfolio.working:  # nothing in flight: the broker's figure is exact
            portfolio.set_buying_power(available)
        # the buys still working may not be in the broker's figure yet: they are taken off it
        budget = (available - portfolio.pending_buys()) * RESIZE_SHARE
        price = portfolio.prices.get(intent.symbol, 0.0)
        qty = min(math.floor(budget / price), intent.qty - 1) if price > 0 else 0
        held = None
        if qty < 1 or qty * price < self._min_notional:
            held = f"the buying power {available:.2f} buys less than the minimum order"
        resized = replace(intent, qty=float(qty), notional=None)  # whole shares, by qty
        if held is None:
            admitted, stopped = self.gate.admit([resized], prices=portfolio.prices, holding=portfolio.expected,
                                                now=self.market_now())
            self._held([h for h in stopped if h.rule == "limit"], self._notes, seq)
            held = None if admitted == [resized] else stopped[0].note if stopped else "the send gate held it"
        if held is not None:
            self._not_resized(intent, coid, held)
            return
        new = resized_order_id(coid)
        portfolio.add_working(new, resized, seq)
        self._report.orders_resized += 1
        self._report.orders += 1
        self._notes.append(f"{intent.symbol}: {intent.side} resized from {intent.qty:g} to {qty:g} to fit the "
                           f"broker's buying power ({available:.2f})")
        self._recorder.event("order_resized", {"client_order_id": coid, "resized_client_order_id": new,
                                               "qty": intent.qty, "resized_qty": float(qty),
                                               "buying_power": available})
        self._sends += 1
        self.sender.submit_all([(self._job(new, resized), (seq, resized, None))])

    def _not_resized(self, intent: OrderIntent, coid: str, why: str) -> None:
        self._notes.append(f"{intent.symbol}: {intent.side} not resized: {why}")
        self._recorder.event("order_not_resized", {"client_order_id": coid, "reason": why})

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
        self._resend[(working.symbol, working.side)] = coid
        log.warning("%s: unknown to the broker %.1f s after an unknown outcome; counted as never sent", coid,
                    at - first)
        self._recorder.event("order_not_at_broker", {"client_order_id": coid, "absent_seconds": round(at - first, 3)})

    # -- on a helper thread ------------------------------------------------------------------------

    def read_buying_power(self, sends: int | None = None) -> None:
        """Ask the broker for the account's buying power; applied to the portfolio on the loop. With
        ``sends`` (the hand-overs counted when it was asked, with no order working) it is dropped if an
        order left meanwhile; without, it is applied as read (before trading starts)."""
        broker = self.sender.broker
        try:
            available = broker.account().buying_power
        except Exception as exc:
            log.warning("reading the buying power failed: %s", broker.describe(exc))
            available = None
        self._threads.loop.call_soon_threadsafe(self._take_buying_power, available, sends)

    def _take_buying_power(self, available: float | None, sends: int | None) -> None:
        """On the loop: the buying power read, unless orders left while it was read (asked again later)."""
        stale = sends is not None and (sends != self._sends or bool(self._portfolio.working))
        if available is None or stale:
            self._bp_asked = False
            return
        self._portfolio.set_buying_power(available)

    def _read_for_resize(self, seq: int, intent: OrderIntent, coid: str) -> None:
        """A fresh account for the one resize of an order refused for buying power."""
        broker = self.sender.broker
        try:
            available = broker.account().buying_power
        except Exception as exc:
            log.warning("reading the buying power to resize %s failed: %s", coid, broker.describe(exc))
            available = None
        self._threads.loop.call_soon_threadsafe(self._resize, seq, intent, coid, available)

    # -- on a sender's reader thread --------------------------------------------------------------

    def on_sent(self, sent: Sent) -> None:
        """Time the order from its minute's last bar, hand its answer to the loop."""
        seq, intent, ready = sent.tag
        if ready is not None and not math.isnan(sent.sent_at):
            self.latencies.append((sent.sent_at - ready) * 1000.0)
            self.answered.append((sent.answered_at - ready) * 1000.0)
        self._threads.loop.call_soon_threadsafe(self.on_submitted, seq, intent, sent.result)
