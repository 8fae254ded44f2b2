"""The live trading loop: streamed bars in, strategy and risk, market orders out, state to Postgres.

One asyncio loop owns the hot path (bar -> minute complete -> strategy -> risk -> order dispatch).
Orders go out through worker processes started and connected before the first bar (:class:`OrderSender`),
Postgres writes through :class:`Writer`, and the slow chores (parameter reloads, the session phase,
broker sync, REST refills, garbage collection) run on helper threads between minutes, so nothing on
the hot path waits for Postgres. No order is sent against a working order on the other side of the
same symbol; fills the trade stream missed are recovered from the broker (see
:mod:`openbell.broker.updates`).

:class:`TradingAttempt` is the coordinator: it takes the broker's ports (:class:`~openbell.ports.Venue`, built by
the caller's composition root), builds one part per job on them, and drives the minutes.

- :mod:`~openbell.trading.prepare`: reconcile, warmup bars, the account (before the loop trades)
- :mod:`~openbell.trading.streams`: the bar and trade-update streams and their watchdog
- :mod:`~openbell.trading.feed`: bars checked, stored and assembled into minutes; REST refills
- :mod:`~openbell.trading.halts`: the symbols halted now (the data stream's statuses)
- :mod:`~openbell.trading.decide`: one minute's decision (strategy, risk limits)
- :mod:`~openbell.trading.guard`: the strategy called within its time budget, its output checked, failures counted
- :mod:`~openbell.trading.dispatch`: orders out, unknown outcomes and resends
- :mod:`~openbell.risk.owner`, :mod:`~openbell.risk.gate`: the risk state's one owner, the send gate
- :mod:`~openbell.trading.risklink`: the risk state restored, followed, the loss stop tripped and stored
- :mod:`~openbell.trading.trades`: trade updates applied and stored
- :mod:`~openbell.trading.sync`: order lookups, fill recovery, the broker sync, book correction
- :mod:`~openbell.trading.reload`: the strategy in force and parameter hot reload
- :mod:`~openbell.trading.housekeeping`: the chores between minutes (GC, lock, clock, phase)
- :mod:`~openbell.trading.recording`: the queued Postgres writes
- :mod:`~openbell.trading.alerting`: the alerts due between minutes
- :mod:`~openbell.trading.supervision`: stops an attempt whose Airflow supervisor is gone
"""

from __future__ import annotations

import asyncio
import gc
import logging
import math
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, replace
from datetime import date, timedelta
from typing import Any

from sqlalchemy import Engine

from openbell.alerts.notify import Level, alert
from openbell.broker.book import orders_sent
from openbell.broker.journal import event
from openbell.calendar import Session
from openbell.calendar import session as session_of
from openbell.clock import MarketClock, cached_now
from openbell.metrics import SessionMetrics
from openbell.policy import OrderLimits, OrderPolicy
from openbell.ports import CredentialsError, StreamPort, Venue
from openbell.risk.gate import SendGate
from openbell.risk.owner import RiskOwner
from openbell.store.scope import account_of
from openbell.strategy import RiskGate, RiskLimits
from openbell.trading.alerting import LoopAlerts
from openbell.trading.attempt_report import AttemptReport, percentile
from openbell.trading.context import LoopContext
from openbell.trading.decide import Decider
from openbell.trading.dispatch import UNSENT_GRACE, Dispatcher
from openbell.trading.feed import MinuteFeed
from openbell.trading.fence import Fencing, SessionLock, SessionLocked
from openbell.trading.guard import StrategyGuard
from openbell.trading.halts import HaltWatch
from openbell.trading.housekeeping import Housekeeping, pause_gc
from openbell.trading.minutes import MINUTE, MinuteBook, floor_minute, frame_bars
from openbell.trading.phasewatch import WINDING_DOWN, PhaseWatch
from openbell.trading.portfolio import Portfolio
from openbell.trading.prepare import Preparation
from openbell.trading.recording import Recorder
from openbell.trading.reload import ParamReload
from openbell.trading.risklink import RiskLink
from openbell.trading.sender import OrderSender
from openbell.trading.settings import LoopSettings
from openbell.trading.streams import StreamHandlers, Streams
from openbell.trading.supervision import supervised
from openbell.trading.sync import BrokerSync
from openbell.trading.threads import Threads
from openbell.trading.trades import TradeUpdates
from openbell.trading.writer import Writer

__all__ = ["UNSENT_GRACE", "AttemptReport", "SessionOver", "TradingAttempt", "run_trading_attempt"]

log = logging.getLogger(__name__)

SWITCH_INTERVAL = 0.0005  # seconds; with Python's default the loop could wait 5 ms for the writer's GIL


class SessionOver(RuntimeError):
    """The session has closed (market time): there is nothing left to trade."""


class TradingAttempt:
    """One attempt at trading one session. Build it, then ``await run()`` (or use run_trading_attempt)."""

    def __init__(
        self,
        venue: Venue,
        engine: Engine,
        session: Session,
        settings: LoopSettings | None = None,
        *,
        clock: MarketClock,
        fence: SessionLock | None = None,
    ) -> None:
        cfg = settings or LoopSettings()
        self.engine = engine
        self.session = session
        self.d: date = session.date
        self.clock = clock
        # No order is opened for a minute ending after this market time (the liquidation's time), so
        # nothing can race the liquidation even before the phase change is seen.
        self.trade_until = min(cfg.trade_until or session.close, session.close)
        self.universe = tuple(dict.fromkeys(s.upper() for s in cfg.universe))
        if not self.universe:
            raise ValueError("the universe is empty")
        risk = cfg.risk
        self.gate = risk if isinstance(risk, RiskGate) else RiskGate(risk or RiskLimits(), universe=self.universe)
        self.gate.defer_logs = True  # logged by the housekeeping, after the orders are out
        self.risk = RiskOwner(self.gate)  # the one owner of the risk state; every part reads it
        self.order_workers = max(1, cfg.order_workers)  # processes: an order never waits for this one's GIL
        # threads across the workers: one per order of a decision, so none waits for another's answer
        self.order_threads = cfg.order_threads or math.ceil(min(len(self.universe), 16) / self.order_workers)
        self.broker = venue.broker
        self.market_data = venue.market_data
        self.report = AttemptReport(session_date=session.date.isoformat())
        self.portfolio = Portfolio()
        self.lateness: list[float] = []  # market seconds from a streamed minute's end to its decision
        self.threads = threads = Threads()
        account = account_of(engine.url)  # the state's account, whose order ids are built and recognised
        self.recorder = Recorder(threads, self.d, self.universe, account=account)
        self._build(LoopContext(session, self.universe, clock, threads, self.recorder, self.report, account), cfg,
                    engine, fence, venue.streams)

    def _build(self, ctx: LoopContext, cfg: LoopSettings, engine: Engine, fence: SessionLock | None,
               feeds: StreamPort) -> None:
        """The parts: what they all share in one context, each given what is particular to it."""
        portfolio, session, threads = self.portfolio, ctx.session, ctx.threads
        self.phase = PhaseWatch(engine, session.date, self._on_phase, on_risk=self._on_risk)
        self.fencing = Fencing(fence, threads, self.report)  # re-verified every minute; trading pauses meanwhile
        self._prep = Preparation(self.broker, self.market_data, engine, session, self.universe, self.report,
                                 warmup_sessions=int(cfg.warmup_sessions))
        self.reload = ParamReload(ctx, engine=engine, strategy_name=cfg.strategy_name, override=cfg.params_override)
        self.feed = MinuteFeed(ctx, data=self.market_data, grace=timedelta(seconds=cfg.grace_seconds),
                               wall_grace=cfg.wall_grace)
        self.halts = HaltWatch(self.universe, self.recorder, self.report)
        self.send_gate = SendGate(self.risk, cfg.limits or OrderLimits(), trade_until=self.trade_until,
                                  winding_down=lambda: self.phase.winding_down, last_prices=self.feed.barcheck.last)
        self.send_gate.halted = self.halts.halted  # no order for a halted symbol until it resumes
        self.risk_link = RiskLink(ctx, self.risk, self.send_gate, engine)
        policy = OrderPolicy(min_notional=float(cfg.min_notional), band=float(cfg.rebalance_band),
                             limits=self.send_gate.limits, order_type=cfg.order_type, limit_collar=cfg.limit_collar)
        self._fractional = bool(cfg.fractional)
        self.dispatch = Dispatcher(ctx, portfolio, policy=policy, gate=self.send_gate)
        self.guard = StrategyGuard(ctx, self.gate, budget=timedelta(seconds=cfg.strategy_budget_seconds),
                                   reduce_after=cfg.strategy_failures_to_reduce,
                                   on_reduce=self.risk_link.strategy_failed)
        self.risk.listen(self.guard.risk_changed)  # a resume starts the count of failures over
        self.decider = Decider(ctx, portfolio, self.guard, self.reload, self.dispatch, self.fencing,
                               trade_until=self.trade_until, on_stop=self.risk_link.loss_stop)
        self.sync = BrokerSync(ctx, portfolio, broker=self.broker, on_absent=self.dispatch.order_absent,
                               on_equity=self.risk_link.broker_equity, on_synced=self.risk_link.synced,
                               every=cfg.sync_every)
        self.trades = TradeUpdates(ctx, portfolio, read=feeds.read, lookup=self.sync.start_lookup)
        handlers = StreamHandlers(on_bar=self.feed.streamed, on_corrected=self.feed.corrected,
                                  on_status=self._on_status, on_subscribed=self.feed.subscribed,
                                  on_trade_update=self.trades.on_update, on_trade_reconnect=self.sync.start_recovery)
        self.streams = Streams(ctx, feeds, handlers, silence=timedelta(minutes=cfg.silence_minutes),
                               trade_backoff=cfg.trade_stream_backoff)
        self.metrics = SessionMetrics(self.d.isoformat())
        self.alerts = LoopAlerts(self.d, engine)
        self.housekeeping = Housekeeping(ctx, engine, gate=self.gate, fencing=self.fencing,
                                         params=self.reload if cfg.params_override is None else None,
                                         sync=self.sync, on_winding_down=self._enter_liquidation,
                                         on_round=self._between_minutes)

    # -- what the run attaches -------------------------------------------------------------------

    def attach(self, loop: asyncio.AbstractEventLoop, writer: Writer, pool: ThreadPoolExecutor,
               sender: OrderSender) -> None:
        """Wire the parts to the running event loop, the Postgres writer, the helper pool and the order
        workers (``run`` does this; so does a test that drives the parts itself)."""
        self.threads.loop, self.threads.pool = loop, pool
        self.recorder.writer = writer
        self.dispatch.sender = sender
        self.send_gate.listen(sender.gate)  # a job a worker still holds is not sent once the gate closes
        self.feed.minute_ready = asyncio.Event()

    @property
    def book(self) -> MinuteBook:
        return self.feed.book

    @property
    def seq(self) -> int:
        """The next decision's sequence number."""
        return self.decider.seq

    @seq.setter
    def seq(self, seq: int) -> None:
        self.decider.seq = seq

    # -- preparation (blocking, before the loop trades) -----------------------------------------

    def prepare(self) -> None:
        """Reconcile, choose parameters, warm the strategy up with no gap, load the account."""
        prep = self._prep
        self.seq, liquidating = prep.reconcile()
        if liquidating:
            self.send_gate.liquidate()
        with self.engine.connect() as conn:
            self.send_gate.sent_today = orders_sent(conn, self.d)  # earlier attempts count toward the day
        strategy = self.reload.load()
        now = self.clock.now()
        start_minute = max(self.session.open, floor_minute(now))
        self.reload.warm = warm = prep.history(start_minute)
        strategy.warmup(warm.copy())  # a strategy may add columns to what it is given
        self.feed.start(start_minute)
        self.streams.last_seen = max(start_minute, floor_minute(now))
        prep.load_account(self.portfolio, self.feed.barcheck, frame_bars(warm))
        if self._fractional or self.gate.limits.allow_short:  # the assets' terms, read once per day
            fractionable, shortable = prep.asset_terms()
            self.dispatch.policy = replace(self.dispatch.policy, fractional=fractionable if self._fractional
                                           else frozenset())
            self.gate.limits = replace(self.gate.limits, shortable=shortable)
        self.report.start_equity = round(self.portfolio.equity(), 2)
        prep.start_day(self.gate, self.portfolio)
        self.risk_link.restore(prep.risk())

    # -- the loop ---------------------------------------------------------------------------------

    async def run(self) -> AttemptReport:
        """Trade until the session is over (market time); return the summary."""
        sender = OrderSender(self.broker, self.dispatch.on_sent, workers=self.order_workers, threads=self.order_threads)
        pool = ThreadPoolExecutor(2, thread_name_prefix="openbell-aux")
        self.attach(asyncio.get_running_loop(), Writer(self.engine), pool, sender)
        collecting, frozen = False, gc.get_freeze_count()
        switch = sys.getswitchinterval()
        sys.setswitchinterval(SWITCH_INTERVAL)  # the loop must not wait 5 ms for a helper thread's GIL
        try:
            self.phase.start()
            await asyncio.gather(asyncio.to_thread(self.prepare), asyncio.to_thread(sender.start))
            await asyncio.to_thread(self.dispatch.read_buying_power)  # buys fit it from the first decision
            collecting = pause_gc()  # collections happen between minutes (housekeeping)
            self.report.first_seq = self.seq
            self.streams.last_seen = max(self.streams.last_seen, await self.clock.anow())
            self.streams.start()
            # minutes from here on are streamed; those before are fetched by the catch-up refill
            await self.streams.subscribed()
            await self._drive()
            if self.fencing.out is not None:
                raise SessionLocked(self.fencing.out)
            await self.clock.wait_until(self.session.close)
        finally:
            self.threads.closing = True
            await self.streams.stop()
            sender.close()
            self.phase.stop()
            if collecting:
                gc.enable()
            if not frozen:  # objects frozen before the session (by the caller) stay frozen
                gc.unfreeze()
            self.threads.pool.shutdown(wait=True)
            self._finish()
            sys.setswitchinterval(switch)
        return self.report

    async def _drive(self) -> None:
        """Decide every minute in order until the close: once complete or passed by the stream, else after a
        short wait; refilled by REST only when the stream could not have delivered it."""
        feed, decider, fencing, close, clock = self.feed, self.decider, self.fencing, self.session.close, self.clock
        book = feed.book
        while book.next_minute < close and fencing.out is None:
            t = book.next_minute
            if not book.decidable(t):
                await feed.wait(t)
            why = feed.refill_reason(t)
            refilled = why is not None and await feed.refill(t, why)
            fetched = refilled or (feed.refilled_until is not None and t < feed.refilled_until)
            ready = None if fetched else book.ready_at(t)
            bars = book.take(t)
            stale = book.decidable(t + MINUTE)  # catching up: only the latest minute may trade
            if not stale and not fetched:
                self.lateness.append((cached_now(clock) - (t + MINUTE)).total_seconds())
            self.report.minutes_without_bars += len(bars) < len(self.universe)
            decider.decide(t, bars, ready, trade=not stale)
            log.debug("minute %s decided (%s, %d bars)", t, "refill" if fetched else "stream", len(bars))
            self.housekeeping.tick(decider.seq, decider.today)
            if self.send_gate.credentials_refused is not None:
                await asyncio.to_thread(self._credentials_refused, self.send_gate.credentials_refused)

    def _credentials_refused(self, why: str) -> None:
        """The broker refused the key on an order: alerted as such, and the attempt fails loudly."""
        alert("credentials_refused", self.d.isoformat(), f"openbell {self.d}: Alpaca refused the credentials",
              f"An order was refused before the broker made it ({why}); no order can be sent with this key. "
              "Fix the Alpaca connection, then clear live_trading.", session_date=self.d, engine=self.engine,
              level=Level.FAILURE)
        raise CredentialsError(f"the broker refused the credentials on an order: {why}")

    def _finish(self) -> None:
        report, dispatch = self.report, self.dispatch
        self.gate.flush_logs()
        if self.reload.strategy is not None:
            report.end_equity = round(self.portfolio.equity(), 2)
            report.last_seq = self.seq - 1 if report.decisions else None
        report.latency_p50_ms = percentile(dispatch.latencies, 0.50)
        report.latency_p99_ms = percentile(dispatch.latencies, 0.99)
        report.latency_samples = len(dispatch.latencies)
        report.lateness_p50_s = percentile(self.lateness, 0.50)
        report.lateness_p99_s = percentile(self.lateness, 0.99)
        report.answered_p50_ms = percentile(dispatch.answered, 0.50)
        report.answered_p99_ms = percentile(dispatch.answered, 0.99)
        report.reconnects = max(0, self.streams.connects - 1 - report.stream_restarts)
        report.risk_clips = self.gate.clip_counts()
        self.metrics.session(report, latencies_ms=dispatch.latencies, lateness_s=self.lateness)
        self.recorder.flush()
        writer = self.recorder.writer
        writer.flush(timeout=10.0)  # recovered fills are counted as they are written
        summary = {k: v for k, v in report.as_dict().items() if k not in ("reconcile", "writer")}
        writer.put(lambda conn: event(conn, self.d, "live_session_end", summary))
        writer.close(timeout=30.0)
        report.writer = asdict(writer.stats)

    def _on_status(self, symbol: str, code: str, reason: str) -> None:
        self.halts.on_status(symbol, code, reason, cached_now(self.clock))

    def _between_minutes(self) -> None:
        """Between minutes, on the helper pool: the trading metrics and the alerts due (never raises)."""
        try:
            equity: float | None = self.portfolio.equity()
        except Exception:  # read off the loop; a concurrent update may interrupt it
            equity = None
        self.metrics.minute(self.report, equity=equity, latencies_ms=self.dispatch.latencies,
                            lateness_s=self.lateness)
        try:
            self.alerts.check(self.report)
        except Exception:
            log.exception("alerting failed")

    # -- the risk state ---------------------------------------------------------------------------

    def _on_risk(self, state: str) -> None:
        """From the phase watch's thread: the stored risk state changed (an operator, or this loss stop)."""
        if not self.threads.closing:
            self.threads.loop.call_soon_threadsafe(self._apply_risk, state)

    def _apply_risk(self, state: str) -> None:
        self.risk_link.follow(state, self.phase.risk_cause, self.phase.extra_loss)

    # -- the session phase ------------------------------------------------------------------------

    def _on_phase(self, phase: str | None) -> None:
        """From the phase watch's thread: a liquidating or closed session stops new orders at once."""
        if phase in WINDING_DOWN and not self.threads.closing:
            self.threads.loop.call_soon_threadsafe(self._enter_liquidation, phase)

    def _enter_liquidation(self, phase: str) -> None:
        if not self.send_gate.liquidating:
            log.info("session %s is %s: no new orders", self.d, phase)
        self.send_gate.liquidate()
        self.report.liquidating_seen = True


def run_trading_attempt(
    venue: Venue,
    engine: Engine,
    session_date: date,
    *,
    clock: MarketClock,
    lock_wait: float = 30.0,
    **options: Any,
) -> AttemptReport:
    """Trade ``session_date`` until its close (market time) and return the summary.

    Holds the session's advisory lock for the whole run (a second attempt waits ``lock_wait``
    seconds, then raises SessionLocked); raises SessionOver when the close has passed. Options are
    :class:`~openbell.trading.settings.LoopSettings`' fields (strategy_name, params_override, risk, universe,
    min_notional, ...).
    """
    s = session_of(session_date)
    if s is None:
        raise ValueError(f"{session_date} is not an NYSE session")
    with SessionLock(engine, session_date, wait=lock_wait) as fence:
        now = clock.now()
        if now >= s.close:
            raise SessionOver(
                f"session {session_date} is over (market time {now.isoformat()} >= close "
                f"{s.close.isoformat()}); nothing to trade"
            )
        # a supervisor gone (or SIGTERM) stops trading and fails the attempt, releasing the lock
        live = TradingAttempt(venue, engine, s, LoopSettings(**options), clock=clock, fence=fence)
        return asyncio.run(supervised(live.run()))
