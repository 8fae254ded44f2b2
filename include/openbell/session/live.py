"""The live trading loop: streamed bars in, strategy and risk, market orders out, state to Postgres.

One asyncio loop owns the hot path (bar -> minute complete -> strategy -> risk -> order dispatch).
Orders go out through worker processes started and connected before the first bar (:class:`OrderSender`),
Postgres writes through :class:`Writer`, and the slow chores (parameter reloads, the session phase,
broker sync, REST refills, garbage collection) run on helper threads between minutes, so nothing on
the hot path waits for Postgres. No order is sent against a working order on the other side of the
same symbol; fills the trade stream missed are recovered from the broker (see
:mod:`openbell.broker.updates`).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import math
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pandas as pd
from alpaca.trading.enums import QueryOrderStatus
from alpaca.trading.models import Order, TradeUpdate
from alpaca.trading.requests import GetOrdersRequest
from sqlalchemy import Connection, Engine, text

from openbell import alpaca as ob_alpaca
from openbell.alpaca import AlpacaConfig, error_message
from openbell.broker import book
from openbell.broker.ids import client_order_id, parse_client_order_id
from openbell.broker.journal import event
from openbell.broker.orders import SubmitResult, find_order
from openbell.broker.reconcile import ReconcileReport, broker_session_orders, order_row, reconcile, signed_qty
from openbell.broker.updates import apply_trade_update, recover_fills
from openbell.calendar import Session, previous_sessions
from openbell.calendar import session as session_of
from openbell.clock import MarketClock
from openbell.marketdata import Window, fetch_bars
from openbell.session.barcheck import BarCheck
from openbell.session.fence import SessionLock, SessionLocked
from openbell.session.minutes import MINUTE, MinuteBook
from openbell.session.phasewatch import PhaseWatch
from openbell.session.portfolio import OrderIntent, Portfolio
from openbell.session.sender import OrderJob, OrderSender, Sent
from openbell.session.writer import Write, Writer
from openbell.store.bars import load_bars, upsert_bars
from openbell.store.params import latest_params
from openbell.store.sessions import get_phase, set_phase
from openbell.strategy import Bar, InvalidParams, RiskGate, RiskLimits, Strategy, build
from openbell.strategy.base import DEFAULT_UNIVERSE

log = logging.getLogger(__name__)

FINAL = book.FINAL_STATUSES
SWITCH_INTERVAL = 0.0005  # seconds; with Python's default the loop could wait 5 ms for the writer's GIL
HOUSEKEEPING_DELAY = 0.02  # wall seconds after a decision
FULL_GC_EVERY = 30  # decisions between full collections (the others collect the young generations)
CLOCK_REFRESH = 4.0  # wall seconds; a simulator clock goes stale (and is read on the loop) after 5 s
WRITE_DELAY = 0.02  # wall seconds a write waits on the loop before going to the writer
RECOVERY_DELAY = 0.1  # wall seconds after the trade stream reconnects, so it is listening again
SUBSCRIBE_WAIT = 5.0  # wall seconds the first catch-up waits for the bar stream's subscription
UNSENT_GRACE = 2.0  # wall seconds the broker may take to show an order before it counts as never sent
SEND_MARGIN = timedelta(seconds=2)  # market time: no order leaves this close to the liquidation
BAR_COLUMNS = ["timestamp", "symbol", "open", "high", "low", "close", "volume"]


class SessionOver(RuntimeError):
    """The session has closed (market time): there is nothing left to trade."""


@dataclass
class SessionReport:
    """The live step's summary."""

    session_date: str
    bars: int = 0
    decisions: int = 0
    orders: int = 0
    rejected: int = 0
    fills: int = 0
    reconnects: int = 0
    stream_restarts: int = 0
    refills: int = 0
    refilled_bars: int = 0
    orders_deferred: int = 0
    orders_held: int = 0  # wanted, but held at the trading cut-off or once the session was liquidating
    orders_not_sent: int = 0  # unknown outcome, unknown to the broker after a grace: never sent
    orders_resent: int = 0  # such an order sent again under its own client_order_id
    bars_refused: int = 0
    late_bars_stored: int = 0
    trade_updates_unparsed: int = 0
    fills_recovered: int = 0
    trade_stream_reconnects: int = 0
    first_seq: int | None = None
    first_live_decision_at: str | None = None  # wall time (UTC) of the first decision on a streamed minute
    fence_pauses: int = 0
    last_seq: int | None = None
    param_versions: list[int | None] = field(default_factory=list)
    params_refused: int = 0
    liquidating_seen: bool = False
    latency_p50_ms: float | None = None
    latency_p99_ms: float | None = None
    latency_samples: int = 0
    answered_p50_ms: float | None = None
    answered_p99_ms: float | None = None
    start_equity: float | None = None
    end_equity: float | None = None
    writer: dict[str, int] = field(default_factory=dict)
    reconcile: dict[str, Any] = field(default_factory=dict)
    risk_clips: dict[str, dict[str, int]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Candidate:
    strategy: Strategy
    version_id: int | None
    warmed_through: datetime | None


def _percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))
    return round(ordered[k], 3)


def _floor_minute(t: datetime) -> datetime:
    return t.replace(second=0, microsecond=0)


def _bars_frame(rows: list[Bar]) -> pd.DataFrame:
    frame = pd.DataFrame(
        [(b.ts, b.symbol, b.open, b.high, b.low, b.close, b.volume) for b in rows], columns=BAR_COLUMNS
    )
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
    return frame


def _frame_bars(frame: pd.DataFrame) -> list[Bar]:
    return [
        Bar(
            str(r.symbol),
            pd.Timestamp(r.timestamp).to_pydatetime(),
            float(r.open),
            float(r.high),
            float(r.low),
            float(r.close),
            float(r.volume),
        )
        for r in frame.itertuples(index=False)
    ]


_INSERT_BAR = text(
    "INSERT INTO bars (symbol, ts, open, high, low, close, volume, trade_count, vwap, source)"
    " VALUES (:symbol, :ts, :open, :high, :low, :close, :volume, :trade_count, :vwap, :source)"
    " ON CONFLICT (symbol, ts) DO UPDATE SET open = EXCLUDED.open, high = EXCLUDED.high, low = EXCLUDED.low,"
    " close = EXCLUDED.close, volume = EXCLUDED.volume, trade_count = EXCLUDED.trade_count,"
    " vwap = EXCLUDED.vwap, source = EXCLUDED.source, ingested_at = now()"
)


class LiveSession:
    """One attempt at trading one session. Build it, then ``await run()`` (or use run_live_session)."""

    def __init__(
        self,
        config: AlpacaConfig,
        engine: Engine,
        session: Session,
        *,
        clock: MarketClock,
        strategy_name: str = "momentum_rotation",
        params_override: dict[str, Any] | None = None,
        risk: RiskLimits | RiskGate | None = None,
        universe: Sequence[str] = DEFAULT_UNIVERSE,
        min_notional: float = 100.0,
        warmup_sessions: int = 5,
        silence_minutes: float = 3.0,
        grace_seconds: float = 2.0,
        wall_grace: float = 0.15,
        sync_every: int = 1,
        order_workers: int = 2,
        order_threads: int | None = None,
        trade_until: datetime | None = None,
        trade_stream_backoff: tuple[float, float] = (0.25, 5.0),
        fence: SessionLock | None = None,
    ) -> None:
        self.config = config
        self.fence = fence  # re-verified every minute; trading pauses while it cannot be
        self._fence_ok = True
        self._fenced_out: str | None = None
        self.engine = engine
        self.session = session
        # No order is opened for a minute ending after this market time (the liquidation's time), so
        # nothing can race the liquidation even before the phase change is seen.
        self.trade_until = min(trade_until or session.close, session.close)
        self.d: date = session.date
        self.clock = clock
        self.strategy_name = strategy_name
        self.params_override = params_override
        self.universe = tuple(dict.fromkeys(s.upper() for s in universe))
        if not self.universe:
            raise ValueError("the universe is empty")
        if isinstance(risk, RiskGate):
            self.gate = risk
        else:
            self.gate = RiskGate(risk or RiskLimits(), universe=self.universe)
        self.gate.defer_logs = True  # logged by the housekeeping, after the orders are out
        self.min_notional = float(min_notional)
        self.warmup_sessions = int(warmup_sessions)
        self.silence = timedelta(minutes=silence_minutes)
        self.grace = timedelta(seconds=grace_seconds)
        self.wall_grace = wall_grace
        self.sync_every = max(1, sync_every)
        self.order_workers = max(1, order_workers)  # processes: an order never waits for this one's GIL
        # threads across the workers: one per order of a decision, so none waits for another's answer
        self.order_threads = order_threads or math.ceil(min(len(self.universe), 16) / self.order_workers)
        self.trade_stream_backoff = trade_stream_backoff  # wall seconds between reconnect attempts
        self.report = SessionReport(session_date=session.date.isoformat())
        self.latencies: list[float] = []  # bar that completed the minute -> order handed to a worker's client
        self.answered: list[float] = []  # the same bar -> the broker's answer to the order
        self.portfolio = Portfolio()
        self.strategy: Strategy | None = None
        self.version_id: int | None = None
        self.liquidating = False
        self.seq = 0
        self._refused: set[int] = set()
        self._candidate: _Candidate | None = None
        self._warm_bars: list[Bar] = []
        self._today: list[tuple[datetime, dict[str, Bar]]] = []
        self._working_since: dict[str, int] = {}
        self._last_seen: datetime = session.open
        self._hk_busy = False
        self._closing = False
        self._refilled: set[datetime] = set()
        self.barcheck = BarCheck()
        self._absent: dict[str, float] = {}  # client_order_id -> when the broker first answered 404
        self._resend: dict[tuple[str, str], str] = {}  # (symbol, side) -> an order found never sent
        self._recovered: set[str] = set()  # execution ids of fills recovered (counted once)
        self._unparsed: set[str] = set()  # trade updates alpaca-py refused (counted once)
        self.phase = PhaseWatch(engine, session.date, self._on_phase)
        self._streams: list[Any] = []
        self._stream_tasks: list[asyncio.Task[None]] = []
        self._connects = 0
        self._clock_read = -math.inf
        self._pending: list[Write] = []
        self._flush_due = False

    # -- preparation (blocking, before the loop trades) -----------------------------------------

    def prepare(self) -> None:
        """Reconcile, choose parameters, warm the strategy up with no gap, load the account."""
        phase = get_phase(self.engine, self.d)
        winding_down = phase in ("liquidating", "closed")  # leave the liquidation's orders alone
        rec: ReconcileReport = reconcile(self.config, self.engine, self.d, cancel_foreign=not winding_down)
        self.report.reconcile = rec.as_dict()
        with self.engine.connect() as conn:
            self.seq = max(rec.max_decision_seq, book.max_decision_seq(conn, self.d)) + 1
        if phase in (None, "pre_open"):
            set_phase(self.engine, self.d, "trading", open_at=self.session.open, close_at=self.session.close)
        self.liquidating = phase in ("liquidating", "closed")

        self.strategy, self.version_id = self._initial_strategy()
        self.report.param_versions.append(self.version_id)

        now = self.clock.now()
        start_minute = max(self.session.open, _floor_minute(now))
        self._warm_bars = self._history(start_minute)
        self.strategy.warmup(_bars_frame(self._warm_bars))
        self.book = MinuteBook(self.universe, start_minute)
        self._last_seen = max(start_minute, _floor_minute(now))

        client = self.config.trading_client()
        account = ob_alpaca.call(client.get_account, what="get_account")
        positions = ob_alpaca.call(client.get_all_positions, what="get_all_positions")
        self.portfolio.cash = float(account.cash)
        for b in self._warm_bars:
            self.portfolio.prices[b.symbol] = b.close  # bars are in time order per symbol
        self.barcheck.last.update(self.portfolio.prices)
        for p in positions:
            self.portfolio.positions[p.symbol] = signed_qty(p)
            if p.current_price is not None and p.symbol not in self.portfolio.prices:
                self.portfolio.prices[p.symbol] = float(p.current_price)
        request = GetOrdersRequest(status=QueryOrderStatus.OPEN, limit=500)
        for o in ob_alpaca.call(client.get_orders, request, what="get_orders(open)"):
            # an order still working from an earlier attempt (or the liquidation) counts as working
            side = str(getattr(o.side, "value", o.side))
            qty = float(o.qty) if o.qty is not None else 0.0
            self.portfolio.adopt_working(o.client_order_id, o.symbol or "", side, qty, float(o.filled_qty or 0))
            key = parse_client_order_id(o.client_order_id)
            self._working_since[o.client_order_id] = key.decision_seq if key else -2
        self.report.start_equity = round(self.portfolio.equity(), 2)
        if self.gate.day_start_equity is None:  # the loss limit counts from the day's first equity
            with self.engine.connect() as conn:
                first = conn.execute(
                    text("SELECT equity FROM equity WHERE session_date = :d ORDER BY ts LIMIT 1"),
                    {"d": self.d},
                ).scalar()
            self.gate.start_day(float(first) if first else max(self.portfolio.equity(), 1.0))

    def _initial_strategy(self) -> tuple[Strategy, int | None]:
        if self.params_override is not None:
            return build(
                self.strategy_name, self.params_override, self.universe
            ), None  # InvalidParams: refuse
        pv = latest_params(self.engine, self.strategy_name)
        if pv is None:
            return build(self.strategy_name, None, self.universe), None
        try:
            return build(self.strategy_name, pv.params, self.universe), pv.id
        except InvalidParams as exc:
            self._refused.add(pv.id)
            self.report.params_refused += 1
            event(self.engine, self.d, "params_refused", {"version_id": pv.id, "error": str(exc)})
            return build(self.strategy_name, None, self.universe), None

    def _history(self, until: datetime) -> list[Bar]:
        """Stored bars of the last sessions and today before ``until``; today's holes fetched by REST."""
        prior = previous_sessions(self.d, self.warmup_sessions)
        start = prior[0].open if prior else self.session.open
        frame = load_bars(self.engine, self.universe, start, until)
        expected = [m for m in self.session.minutes() if m < pd.Timestamp(until)]
        if expected:
            today = frame[frame["timestamp"] >= pd.Timestamp(self.session.open)]
            have = set(zip(today["symbol"], today["timestamp"], strict=True))
            holes = [m for m in expected for s in self.universe if (s, m) not in have]
            if holes:
                lo = min(holes).to_pydatetime()
                fetched = fetch_bars(self.config, self.universe, Window(lo, until))
                if len(fetched):
                    upsert_bars(self.engine, fetched, source="rest")
                    self.report.refills += 1
                    self.report.refilled_bars += len(fetched)
                    frame = load_bars(self.engine, self.universe, start, until)
        frame = frame.sort_values(["timestamp", "symbol"], kind="stable")
        return _frame_bars(frame)

    # -- the loop ---------------------------------------------------------------------------------

    async def run(self) -> SessionReport:
        """Trade until the session is over (market time); return the summary."""
        self.loop = asyncio.get_running_loop()
        self.writer = Writer(self.engine)
        self.sender = OrderSender(self.config, self._on_sent, workers=self.order_workers, threads=self.order_threads)
        self.aux_pool = ThreadPoolExecutor(2, thread_name_prefix="openbell-aux")
        self._minute_ready = asyncio.Event()
        self._bar_subscribed = asyncio.Event()
        watchdog: asyncio.Task[None] | None = None
        collecting, frozen = False, gc.get_freeze_count()
        switch = sys.getswitchinterval()
        sys.setswitchinterval(SWITCH_INTERVAL)  # the loop must not wait 5 ms for a helper thread's GIL
        try:
            self.phase.start()
            await asyncio.gather(asyncio.to_thread(self.prepare), asyncio.to_thread(self.sender.start))
            collecting = self._pause_gc()
            self.report.first_seq = self.seq
            self._last_seen = max(self._last_seen, await self.clock.anow())
            self._start_bar_stream()
            self._start_trade_stream()
            watchdog = asyncio.create_task(self._watchdog())
            # minutes from here on are streamed; those before are fetched by the catch-up refill
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._bar_subscribed.wait(), SUBSCRIBE_WAIT)
            await self._drive()
            if self._fenced_out is not None:
                raise SessionLocked(self._fenced_out)
            await self.clock.wait_until(self.session.close)
        finally:
            self._closing = True
            if watchdog is not None:
                watchdog.cancel()
            await self._stop_streams()
            self.sender.close()
            self.phase.stop()
            if collecting:
                gc.enable()
            if not frozen:  # objects frozen before the session (by the caller) stay frozen
                gc.unfreeze()
            self.aux_pool.shutdown(wait=True)
            self._finish()
            sys.setswitchinterval(switch)
        return self.report

    def _pause_gc(self) -> bool:
        """Move what preparation built out of the collector's way and collect only between minutes
        (see _housekeeping): a full collection of that heap stops every thread for tens of ms.
        Returns whether automatic collection was on."""
        was_on = gc.isenabled()
        gc.collect()
        gc.freeze()
        gc.disable()
        return was_on

    def _finish(self) -> None:
        self.gate.flush_logs()
        if self.strategy is not None:
            self.report.end_equity = round(self.portfolio.equity(), 2)
            self.report.last_seq = self.seq - 1 if self.report.decisions else None
        self.report.latency_p50_ms = _percentile(self.latencies, 0.50)
        self.report.latency_p99_ms = _percentile(self.latencies, 0.99)
        self.report.latency_samples = len(self.latencies)
        self.report.answered_p50_ms = _percentile(self.answered, 0.50)
        self.report.answered_p99_ms = _percentile(self.answered, 0.99)
        self.report.reconnects = max(0, self._connects - 1 - self.report.stream_restarts)
        self.report.risk_clips = self.gate.clip_counts()
        self._flush_writes()
        self.writer.flush(timeout=10.0)  # recovered fills are counted as they are written
        summary = {k: v for k, v in self.report.as_dict().items() if k not in ("reconcile", "writer")}
        self.writer.put(lambda conn: event(conn, self.d, "live_session_end", summary))
        self.writer.close(timeout=30.0)
        self.report.writer = asdict(self.writer.stats)

    async def _drive(self) -> None:
        while self.book.next_minute < self.session.close and self._fenced_out is None:
            t = self.book.next_minute
            if not self.book.complete(t):
                await self._wait_minute(t)
            refilled = False
            if not self.book.complete(t):
                refilled = await self._refill(t)
            ready = None if refilled or t in self._refilled else self.book.completed_at(t)
            self._refilled.discard(t)
            bars = self.book.take(t)
            stale = self.book.complete(t + MINUTE)  # catching up: only the latest minute may trade
            self._decide(t, bars, ready, trade=not stale)
            log.debug("minute %s decided (%s, %d bars)", t, "refill" if refilled else "stream", len(bars))
            self._housekeeping_tick()

    async def _wait_minute(self, t: datetime) -> None:
        """Until ``t`` is complete, its deadline passed, or the stream completed a later minute
        (``t``'s missing bars will not come; waiting would only delay the later one)."""
        due = t + MINUTE + self.grace
        await self.clock.anow()  # refresh the sim mapping without blocking the loop
        while not self.book.complete(t) and not self.book.overtaken(t):
            remaining = self.clock.wall_deadline(due) + self.wall_grace - time.time()
            if remaining <= 0:
                return
            self._minute_ready.clear()
            if self.book.complete(t) or self.book.overtaken(t):
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._minute_ready.wait(), timeout=min(remaining, 1.0))

    async def _refill(self, t: datetime) -> bool:
        """Fetch through REST every completed minute from ``t`` missing from the stream."""
        now = await self.clock.anow()
        end = max(t + MINUTE, _floor_minute(now))
        missing = sorted(self.book.missing(t))
        try:
            frame = await asyncio.get_running_loop().run_in_executor(
                self.aux_pool, fetch_bars, self.config, self.universe, Window(t, end)
            )
        except Exception as exc:
            reason = error_message(exc)
            log.warning("refill of %s failed: %s", t, reason)
            self._write(
                lambda conn: event(conn, self.d, "refill_failed", {"minute": t, "error": reason})
            )
            return True
        added = 0
        for bar in _frame_bars(frame):
            if self._take_bar(bar, "rest", None, None):
                self._refilled.add(bar.ts)
                added += 1
        self.report.refills += 1
        self.report.refilled_bars += added
        payload = {"minute": t, "until": end, "missing": missing, "bars": added}
        self._write(lambda conn: event(conn, self.d, "refill", payload))
        return True

    # -- the hot path -----------------------------------------------------------------------------

    def _decide(self, t: datetime, bars: dict[str, Bar], ready: float | None, *, trade: bool) -> None:
        assert self.strategy is not None
        if self._candidate is not None:
            self._swap_strategy()
        for b in bars.values():
            self.portfolio.prices[b.symbol] = b.close
        equity = self.portfolio.equity()
        try:
            targets = self.strategy.on_minute(t, bars)
            weights, notes = self.gate.apply(targets, equity)
        except Exception as exc:  # a strategy or risk failure skips this minute's trading, loudly
            log.exception("decision at %s failed", t)
            targets, weights, notes, trade = {}, {}, [f"decision failed: {exc}"], False
        seq = self.seq
        self.seq += 1
        self._today.append((t, bars))
        if ready is not None and self.report.first_live_decision_at is None:
            self.report.first_live_decision_at = datetime.now(UTC).isoformat()
        trade = trade and self._fence_ok and self._fenced_out is None
        trade = trade and not self.liquidating and t + MINUTE < self.trade_until  # the liquidation ends trading
        orders = self._place(seq, weights, notes, ready, trade=trade)
        self.report.decisions += 1
        self._record_decision(t, seq, targets, weights, notes, orders, equity)

    def _place(
        self, seq: int, weights: dict[str, float], notes: list[str], ready: float | None, *, trade: bool
    ) -> list[tuple[str, OrderIntent]]:
        """Send the orders that move the account to ``weights`` (when ``trade``); returns them with their
        ids and appends why any was deferred or held to ``notes``."""
        intents: list[OrderIntent] = []
        deferred: list[str] = []
        if trade:
            intents = self.portfolio.intents(weights, self.universe, self.min_notional, deferred)
        if deferred:
            self.report.orders_deferred += len(deferred)
            notes.extend(f"{s}: order deferred, an opposite-side order is working" for s in deferred)
        held = self._send_blocked() if intents else None  # checked right before the orders leave
        if held is not None:
            self.report.orders_held += len(intents)
            notes.append(f"{len(intents)} order(s) held: {held}")
            intents = []
        orders: list[tuple[str, OrderIntent]] = []
        jobs: list[tuple[OrderJob, tuple[int, OrderIntent, float | None]]] = []
        for intent in intents:
            # an order found never sent goes again under its own id: should the broker have it after
            # all, it refuses the id and the submit path returns the existing order
            resent = self._resend.pop((intent.symbol, intent.side), None)
            coid = resent or client_order_id(self.d, seq, intent.symbol)
            self.report.orders_resent += resent is not None
            self.portfolio.add_working(coid, intent)
            self._working_since[coid] = seq
            orders.append((coid, intent))
            jobs.append((OrderJob(coid, intent.symbol, intent.qty, intent.side), (seq, intent, ready)))
        if jobs:
            self.sender.submit_all(jobs)
        self.report.orders += len(intents)
        self._drop_unsent()
        return orders

    def _market_now(self) -> datetime:
        """Market time from the clock's last mapping (no I/O on the loop); the clock itself without one."""
        mapping = getattr(self.clock, "mapping", None)
        return mapping.market_at(time.time()) if mapping is not None else self.clock.now()

    def _send_blocked(self) -> str | None:
        """Why no order may leave now: the session is liquidating, or the market time is at the cut-off."""
        if self.liquidating or self.phase.winding_down:
            return "the session is liquidating"
        now = self._market_now()
        if now >= self.trade_until - SEND_MARGIN:
            return f"market time {now.isoformat()} is at the trading cut-off {self.trade_until.isoformat()}"
        return None

    def _drop_unsent(self) -> None:
        """Orders found never sent that this decision did not want again: final, as never sent."""
        dropped, self._resend = list(self._resend.values()), {}
        for coid in dropped:
            self.report.orders_not_sent += 1

            def write(conn: Connection, coid: str = coid) -> None:
                conn.execute(
                    text("UPDATE orders SET status = 'not_sent', updated_at = now() WHERE client_order_id = :c"
                         " AND NOT (status = ANY(:final))"),
                    {"c": coid, "final": list(FINAL)},
                )
                event(conn, self.d, "order_not_sent", {"client_order_id": coid})

            self._write(write)

    def _on_sent(self, sent: Sent) -> None:
        """On a sender's reader thread: time the order from its minute's last bar, hand it to the loop."""
        seq, intent, ready = sent.tag
        if ready is not None and not math.isnan(sent.sent_at):
            self.latencies.append((sent.sent_at - ready) * 1000.0)
            self.answered.append((sent.answered_at - ready) * 1000.0)
        self.loop.call_soon_threadsafe(self._on_submitted, seq, intent, sent.result)

    def _on_submitted(self, seq: int, intent: OrderIntent, result: SubmitResult) -> None:
        coid = result.client_order_id
        if result.order is not None:
            row = order_row(result.order, self.d, "strategy", f"target weight {intent.target_weight:.4f}")
            if str(getattr(result.order.status, "value", result.order.status)) in FINAL:
                self.portfolio.order_done(coid)
        else:
            self.report.rejected += int(result.outcome == "rejected")
            if result.outcome == "rejected":
                self.portfolio.order_done(coid)
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
            payload = {
                "client_order_id": coid,
                "outcome": result.outcome,
                "reason": result.reason,
                "http_status": result.http_status,
            }
            self._write(lambda conn: event(conn, self.d, "order_rejected", payload))
        self._write(lambda conn: book.upsert_order(conn, row))

    async def _on_bar(self, raw: Any) -> None:
        self.report.bars += 1
        if raw.timestamp + MINUTE > self._last_seen:  # the stream is alive, whatever the bar holds
            self._last_seen = raw.timestamp + MINUTE
        bar = Bar(raw.symbol, raw.timestamp, _price(raw.open), _price(raw.high), _price(raw.low),
                  _price(raw.close), _price(raw.volume))
        if self._take_bar(bar, "stream", raw.trade_count, raw.vwap) and self.book.complete(bar.ts):
            self._minute_ready.set()  # the next minute, or a later one that overtook it

    def _take_bar(self, bar: Bar, source: str, trade_count: Any, vwap: Any) -> bool:
        """A streamed or refilled bar: checked, stored, and kept for its minute's decision unless that
        minute was decided already (a late bar is stored, not decided on). True when kept."""
        late = bar.ts < self.book.next_minute
        reason = self.barcheck.shape_refusal(bar) if late else self.barcheck.refusal(bar)
        if reason is not None:
            self.report.bars_refused += 1
            payload = {"symbol": bar.symbol, "ts": bar.ts, "source": source, "reason": reason,
                       "bar": [bar.open, bar.high, bar.low, bar.close, bar.volume]}
            log.warning("bar refused: %s %s: %s", bar.symbol, bar.ts, reason)
            self._write(lambda conn: event(conn, self.d, "bar_refused", payload))
            return False
        kept = self.book.add(bar)
        if kept or late:
            self.report.late_bars_stored += late
            self._store_bar(bar, source, trade_count, vwap)
        return kept

    async def _on_trade_update(self, msg: dict[str, Any]) -> None:
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
            if self.portfolio.on_fill(
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
                self.report.fills += 1
        if status in FINAL:
            self.portfolio.order_done(coid)
            self._working_since.pop(coid, None)
        self._write(lambda conn: self._store_trade_update(conn, data, coid))

    def _store_trade_update(self, conn: Connection, data: dict[str, Any], coid: str) -> None:
        """On the writer's thread: parse, then write. An update alpaca-py refuses is kept as an event and
        its order asked of the broker, whose word then stores the fill: a fill is never lost."""
        try:
            update = TradeUpdate(**data)
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"[:2000]
            # counted by identity: a batch retried after an outage runs this again
            self._unparsed.add(json_key(data))
            self.report.trade_updates_unparsed = len(self._unparsed)
            log.warning("trade update for %r not parsed: %s", coid, reason.splitlines()[0])
            event(conn, self.d, "trade_update_unparsed", {"client_order_id": coid, "error": reason, "data": data})
            self.loop.call_soon_threadsafe(self._start_lookup, coid)
            return
        apply_trade_update(conn, self.d, update)

    # -- Postgres records (queued) ----------------------------------------------------------------

    def _write(self, fn: Write) -> None:
        """Queue a write for the writer, handed over a moment later: the writer thread waking up
        (for the first write after its idle spell) takes the GIL from orders going out."""
        self._pending.append(fn)
        if not self._flush_due:
            self._flush_due = True
            self.loop.call_later(WRITE_DELAY, self._flush_writes)

    def _flush_writes(self) -> None:
        pending, self._pending, self._flush_due = self._pending, [], False
        for fn in pending:
            self.writer.put(fn)

    def _store_bar(self, bar: Bar, source: str, trade_count: Any, vwap: Any) -> None:
        params = {
            "symbol": bar.symbol,
            "ts": bar.ts,
            "open": bar.open,
            "high": bar.high,
            "low": bar.low,
            "close": bar.close,
            "volume": bar.volume,
            "trade_count": int(trade_count) if trade_count is not None else None,
            "vwap": float(vwap) if vwap is not None else None,
            "source": source,
        }
        self._write(lambda conn: conn.execute(_INSERT_BAR, params))

    def _record_decision(
        self,
        t: datetime,
        seq: int,
        targets: dict[str, float],
        weights: dict[str, float],
        notes: list[str],
        orders: list[tuple[str, OrderIntent]],
        equity: float,
    ) -> None:
        d, version, universe = self.d, self.version_id, self.universe
        scores = getattr(self.strategy, "last_scores", None) or {}
        cash, gross = self.portfolio.cash, self.portfolio.gross_exposure()

        def write(conn: Connection) -> None:  # the rows are built here, on the writer's thread
            from openbell.store.db import json_dumps

            rows = [
                {"d": d, "ts": t, "s": s, "score": _num(scores.get(s)), "w": _num(weights.get(s, 0.0))}
                for s in universe
            ]
            rows_out = [
                book.OrderRow(
                    client_order_id=coid,
                    session_date=d,
                    symbol=i.symbol,
                    side=i.side,
                    qty=i.qty,
                    status="pending_new",
                    decision_seq=seq,
                    reason=f"target weight {i.target_weight:.4f}",
                )
                for coid, i in orders
            ]
            payload = {
                "raw": {k: _num(v) for k, v in targets.items()},
                "weights": {k: _num(v) for k, v in weights.items()},
                "notes": notes,
            }
            conn.execute(
                text(
                    "INSERT INTO decisions (session_date, seq, ts, targets, param_version_id)"
                    " VALUES (:d, :seq, :ts, CAST(:targets AS jsonb), :v) ON CONFLICT DO NOTHING"
                ),
                {"d": d, "seq": seq, "ts": t, "targets": json_dumps(payload), "v": version},
            )
            conn.execute(
                text(
                    "INSERT INTO signals (session_date, ts, symbol, score, weight)"
                    " VALUES (:d, :ts, :s, :score, :w) ON CONFLICT (session_date, ts, symbol)"
                    " DO UPDATE SET score = EXCLUDED.score, weight = EXCLUDED.weight"
                ),
                rows,
            )
            conn.execute(
                text(
                    "INSERT INTO equity (session_date, ts, equity, cash, gross_exposure)"
                    " VALUES (:d, :ts, :e, :c, :g) ON CONFLICT (session_date, ts)"
                    " DO UPDATE SET equity = EXCLUDED.equity, cash = EXCLUDED.cash,"
                    " gross_exposure = EXCLUDED.gross_exposure"
                ),
                {"d": d, "ts": t + MINUTE, "e": equity, "c": cash, "g": gross},
            )
            for row in rows_out:
                book.upsert_order(conn, row)
                if row.client_order_id != client_order_id(d, seq, row.symbol):
                    # a resent order keeps its first decision and takes this one's quantity
                    conn.execute(text("UPDATE orders SET qty = :q WHERE client_order_id = :c"),
                                 {"q": row.qty, "c": row.client_order_id})

        self._write(write)

    # -- hot reload, phase, broker sync (helper threads) ------------------------------------------

    def _housekeeping_tick(self) -> None:
        if self._hk_busy:
            return
        self._hk_busy = True
        snapshot = list(self._today)
        sync = self.report.decisions % self.sync_every == 0
        stale = [c for c, s in self._working_since.items() if self.seq - s >= 2]
        # started a moment later so it does not compete with the orders going out for a CPU
        self.loop.call_later(HOUSEKEEPING_DELAY, self._start_housekeeping, snapshot, sync, stale)

    def _start_recovery(self) -> None:
        if not self._closing:
            self.aux_pool.submit(self._recover_orders)

    def _start_housekeeping(self, *args: Any) -> None:
        if self._closing:
            self._hk_busy = False
            return
        self.aux_pool.submit(self._housekeeping, *args)

    def _housekeeping(
        self, snapshot: list[tuple[datetime, dict[str, Bar]]], sync: bool, stale: list[str]
    ) -> None:
        try:
            self.gate.flush_logs()
            # the automatic collector is off while trading: collect here, between minutes
            gc.collect(2 if self.report.decisions % FULL_GC_EVERY == 0 else 1)
            self._check_fence()
            self._refresh_clock()
            phase = get_phase(self.engine, self.d)
            if phase in ("liquidating", "closed"):
                self.loop.call_soon_threadsafe(self._enter_liquidation, phase)
            if self.params_override is None:
                self._check_params(snapshot)
            if stale:
                self._poll_orders(stale)
            if sync:
                self._sync_account()
        except Exception as exc:  # a chore failing must not stop trading
            log.warning("housekeeping failed: %s", error_message(exc))
        finally:
            self._hk_busy = False

    def _check_fence(self) -> None:
        """Is the session's lock still ours? Pause trading while Postgres cannot say; stop for good
        when another attempt took the lock (it was lost with a Postgres restart)."""
        if self.fence is None:
            return
        try:
            ok = self.fence.verify()
        except SessionLocked as exc:
            self.loop.call_soon_threadsafe(setattr, self, "_fenced_out", str(exc))
            return
        if ok != self._fence_ok:
            log.warning("session lock %s: trading %s", "verified" if ok else "unverifiable",
                        "resumes" if ok else "paused")
            self.report.fence_pauses += not ok
        self._fence_ok = ok

    def _refresh_clock(self) -> None:
        """Read a simulator's clock mapping here, between minutes, before it goes stale: a refresh
        costs tens of milliseconds of CPU that the event loop would otherwise pay mid-decision."""
        refresh = getattr(self.clock, "refresh", None)
        if refresh is None or time.monotonic() - self._clock_read < CLOCK_REFRESH:
            return
        self._clock_read = time.monotonic()
        try:
            refresh()
        except Exception as exc:  # the loop's own reads retry and report it
            log.debug("clock refresh failed: %s", error_message(exc))

    def _on_phase(self, phase: str | None) -> None:
        """From the phase watch's thread: a liquidating or closed session stops new orders at once."""
        if phase in ("liquidating", "closed") and not self._closing:
            self.loop.call_soon_threadsafe(self._enter_liquidation, phase)

    def _enter_liquidation(self, phase: str) -> None:
        if not self.liquidating:
            log.info("session %s is %s: no new orders", self.d, phase)
        self.liquidating = True
        self.report.liquidating_seen = True

    def _check_params(self, snapshot: list[tuple[datetime, dict[str, Bar]]]) -> None:
        pv = latest_params(self.engine, self.strategy_name)
        if pv is None or pv.id == self.version_id or pv.id in self._refused:
            return
        if self._candidate is not None and self._candidate.version_id == pv.id:
            return
        try:
            strategy = build(self.strategy_name, pv.params, self.universe)
        except InvalidParams as exc:
            self._refused.add(pv.id)
            self.report.params_refused += 1
            event(
                self.engine,
                self.d,
                "params_refused",
                {"version_id": pv.id, "error": str(exc), "incumbent": self.version_id},
            )
            return
        today = [b for _, bars in snapshot for b in bars.values()]
        strategy.warmup(_bars_frame(self._warm_bars + today))
        through = snapshot[-1][0] if snapshot else None
        candidate = _Candidate(strategy, pv.id, through)
        self.loop.call_soon_threadsafe(setattr, self, "_candidate", candidate)

    def _swap_strategy(self) -> None:
        cand, self._candidate = self._candidate, None
        assert cand is not None
        for m, bars in self._today:
            if cand.warmed_through is None or m > cand.warmed_through:
                cand.strategy.on_minute(m, bars)
        previous, self.strategy, self.version_id = self.version_id, cand.strategy, cand.version_id
        self.report.param_versions.append(cand.version_id)
        payload = {"from": previous, "to": cand.version_id}
        self._write(lambda conn: event(conn, self.d, "params_reloaded", payload))

    def _start_lookup(self, coid: str) -> None:
        """Ask the broker for one order (an update of it could not be read); no id: every order."""
        if self._closing:
            return
        if coid:
            self.aux_pool.submit(self._poll_orders, [coid])
        else:
            self.aux_pool.submit(self._recover_orders)

    def _poll_orders(self, coids: list[str]) -> None:
        client = self.config.trading_client()
        for coid in coids:
            try:
                order = find_order(client, coid)
            except Exception as exc:
                log.warning("lookup of %s failed: %s", coid, error_message(exc))
                continue
            if order is not None:
                self.loop.call_soon_threadsafe(self._order_polled, order)
            else:
                self.loop.call_soon_threadsafe(self._order_absent, coid, time.monotonic())

    def _order_absent(self, coid: str, at: float) -> None:
        """The broker answered 404 for an order still counted as working. Once that has lasted
        UNSENT_GRACE (the broker may not have indexed it yet) the order counts as never sent: it no
        longer holds back the other side nor the broker sync, and the next decision sends it again
        under the same id if it still wants it (else it is recorded as not_sent)."""
        working = self.portfolio.working.get(coid)
        if working is None:
            self._absent.pop(coid, None)
            return
        first = self._absent.setdefault(coid, at)
        if at - first < UNSENT_GRACE:
            return
        self._absent.pop(coid, None)
        self.portfolio.order_done(coid)
        self._working_since.pop(coid, None)
        self._resend[(working.symbol, working.side)] = coid
        log.warning("%s: unknown to the broker %.1f s after an unknown outcome; counted as never sent", coid,
                    at - first)
        payload = {"client_order_id": coid, "absent_seconds": round(at - first, 3)}
        self._write(lambda conn: event(conn, self.d, "order_not_at_broker", payload))

    def _recover_orders(self) -> None:
        """After the trade stream reconnects: every order of the session, for fills it missed."""
        try:
            orders = broker_session_orders(self.config, self.d)
        except Exception as exc:
            log.warning("order recovery after a trade-stream reconnect failed: %s", error_message(exc))
            return
        for order in orders:
            self.loop.call_soon_threadsafe(self._order_polled, order)

    def _order_polled(self, order: Order) -> None:
        """The broker's view of one order: final states end it, missed fills are recovered once."""
        coid = order.client_order_id
        status = str(getattr(order.status, "value", order.status))
        side = str(getattr(order.side, "value", order.side))
        ours = coid in self.portfolio.filled  # sent (or adopted) by this attempt: memory moves too
        cum = float(order.filled_qty or 0)
        if ours and cum > self.portfolio.filled.get(coid, 0.0):
            self.portfolio.recover(coid, order.symbol or "", side, cum, float(order.filled_avg_price or 0))
        if status in FINAL:
            self.portfolio.order_done(coid)
            self._working_since.pop(coid, None)
        elif ours and coid in self.portfolio.working and order.qty is not None:
            remaining = float(order.qty) - cum
            self.portfolio.working[coid].signed_qty = remaining if side == "buy" else -remaining

        def write(conn: Connection) -> None:
            # the position book moves with a recovered fill only for an order this attempt tracks:
            # for the others the broker sync sets the book
            found = recover_fills(conn, self.d, order, move_book=ours)
            if found is not None:
                self._recovered.add(found.execution_id)  # counted by id: a retried batch runs this again
                self.report.fills_recovered = len(self._recovered)
                log.warning("recovered %g %s of %s missed by the trade stream", found.qty, found.symbol, coid)
                event(conn, self.d, "fill_recovered", {
                    "client_order_id": coid, "execution_id": found.execution_id, "qty": found.qty,
                    "price": found.price})

        self._write(write)

    def _sync_account(self) -> None:
        client = self.config.trading_client()
        account = ob_alpaca.call(client.get_account, what="get_account")
        positions = {p.symbol: signed_qty(p) for p in ob_alpaca.call(client.get_all_positions)}
        self.loop.call_soon_threadsafe(self._apply_sync, float(account.cash), positions)

    def _apply_sync(self, cash: float, positions: dict[str, float]) -> None:
        if self.portfolio.working:  # orders in flight: the snapshot may predate their fills
            return
        self.portfolio.cash = cash
        self.portfolio.positions = positions
        self._write(lambda conn: self._correct_book(conn, positions))

    def _correct_book(self, conn: Connection, positions: dict[str, float]) -> None:
        """The broker wins: fills the trade stream never delivered still end up in the position book."""
        held = book.book_positions(conn, self.d)
        for symbol in sorted(set(held) | set(positions)):
            qty, origin = held.get(symbol, (0.0, "adopted"))
            broker_qty = positions.get(symbol, 0.0)
            if abs(qty - broker_qty) > 1e-9:
                book.set_position(conn, self.d, symbol, broker_qty, None, origin)
                event(conn, self.d, "book_corrected", {"symbol": symbol, "postgres_qty": qty, "broker_qty": broker_qty})

    # -- streams ----------------------------------------------------------------------------------

    def _counting(self, stream: Any) -> None:
        original: Callable[[], Any] = stream._start_ws

        async def start_ws() -> None:
            self._connects += 1
            await original()

        stream._start_ws = start_ws
        stream._reconnect_min_backoff = 0.25  # market minutes pass fast in simulation; 406 is retried
        stream._reconnect_max_backoff = 5.0

    def _start_bar_stream(self) -> None:
        stream = self.config.data_stream()
        self._counting(stream)
        original: Callable[[dict[str, Any]], Any] = stream._dispatch

        async def dispatch(msg: dict[str, Any]) -> None:
            if msg.get("T") == "subscription":  # the server's ack: every later bar will be sent
                self._bar_subscribed.set()
            await original(msg)

        stream._dispatch = dispatch
        stream.subscribe_bars(self._on_bar, *self.universe)
        self._bar_stream = stream
        self._bar_task = asyncio.create_task(stream._run_forever())

    def _start_trade_stream(self) -> None:
        stream = self.config.trading_stream(raw_data=True)
        stream._reconnect_min_backoff, stream._reconnect_max_backoff = self.trade_stream_backoff
        original: Callable[[], Any] = stream._start_ws
        connects = 0

        async def start_ws() -> None:
            nonlocal connects
            await original()
            connects += 1
            if connects > 1:  # fills made while it was down were never sent: ask the broker
                self.report.trade_stream_reconnects += 1
                self.loop.call_later(RECOVERY_DELAY, self._start_recovery)

        stream._start_ws = start_ws
        stream.subscribe_trade_updates(self._on_trade_update)
        self._trade_stream = stream
        self._trade_task = asyncio.create_task(stream._run_forever())

    async def _kill(self, stream: Any, task: asyncio.Task[None]) -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError, Exception):
            await asyncio.wait_for(asyncio.shield(task), timeout=2.0)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(stream.close(), timeout=2.0)

    async def _stop_streams(self) -> None:
        if hasattr(self, "_bar_task"):
            await self._kill(self._bar_stream, self._bar_task)
        if hasattr(self, "_trade_task"):
            await self._kill(self._trade_stream, self._trade_task)

    async def _watchdog(self) -> None:
        """Restart the bar stream when it has been silent for ``silence`` of market time."""
        while True:
            await asyncio.sleep(0.1)
            try:
                now = await self.clock.anow()
            except Exception:
                continue
            if now < self.session.open or now >= self.session.close:
                continue
            if now - self._last_seen <= self.silence:
                continue
            log.warning("bar stream silent since %s (market %s): restarting it", self._last_seen, now)
            self.report.stream_restarts += 1
            payload = {"last_bar_end": self._last_seen, "market_time": now}
            self._write(lambda conn, p=payload: event(conn, self.d, "stream_restart", p))
            self._last_seen = now
            await self._kill(self._bar_stream, self._bar_task)
            self._start_bar_stream()


def _price(value: Any) -> float:
    """A streamed number as a float; a missing or unreadable one becomes NaN (the bar check refuses it)."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def json_key(data: dict[str, Any]) -> str:
    """A stable identity of a JSON-able message."""
    return json.dumps(data, sort_keys=True, default=str)


def _opt(value: Any) -> float | None:
    return None if value is None or value == "" else float(value)


def _num(value: Any) -> float | None:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def run_live_session(
    config: AlpacaConfig,
    engine: Engine,
    session_date: date,
    *,
    clock: MarketClock,
    lock_wait: float = 30.0,
    **options: Any,
) -> SessionReport:
    """Trade ``session_date`` until its close (market time) and return the summary.

    Holds the session's advisory lock for the whole run (a second attempt waits ``lock_wait``
    seconds, then raises SessionLocked); raises SessionOver when the close has passed. Options are
    :class:`LiveSession`'s (strategy_name, params_override, risk, universe, min_notional, ...).
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
        return asyncio.run(LiveSession(config, engine, s, clock=clock, fence=fence, **options).run())
