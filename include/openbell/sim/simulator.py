"""One simulator instance: its configuration, its state (broker, bars, streams, faults, market time) and
the market-time loop. At every minute boundary it pushes bars, announces halts and resumptions, fills
queued orders at the open, applies splits at their open, expires day orders at the close and applies
timed faults; 30 market seconds later it re-sends the corrected bars. :mod:`openbell.sim.server` serves
it over HTTP."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from openbell.calendar import ET, Session
from openbell.sim.accounts import Account, AccountSpec, find, rate_report, totals
from openbell.sim.broker import AssetFlags, Broker
from openbell.sim.faults import Faults
from openbell.sim.feed import BarStore, Rules
from openbell.sim.halts import Halt, HaltBook, status_message
from openbell.sim.playback import (
    MarketPlayback,
    check_range,
    market_instant,
    next_open_close,
    played_sessions,
    session_at,
    session_number,
)
from openbell.sim.ratelimit import DEFAULT_LIMIT, WINDOW_SECONDS, RateLimiter
from openbell.sim.splits import Split, SplitBook
from openbell.sim.store import StateStore
from openbell.sim.streams import DataHub, TradeHub

log = logging.getLogger("openbell.sim")
MINUTE = timedelta(minutes=1)
HALF_MINUTE = timedelta(seconds=30)
CORRECTION_LAG = timedelta(seconds=90)  # from a bar's start to its correction


def session_of(day: date) -> Session:
    """The played session on ``day`` (a session date)."""
    i = session_number(day)
    if i is None:
        raise ValueError(f"{day.isoformat()} is not an NYSE session")
    return played_sessions()[i]


DEFAULT_CORRECTIONS = 0.01  # the share of bars re-sent on updatedBars by default


@dataclass
class SimConfig:
    """Everything the simulator is started with (see ``openbell sim --help``)."""

    session_date: date
    data_dir: Path
    api_key: str
    secret_key: str = field(repr=False)
    speed: float = 60.0
    start: str = "09:25"
    host: str = "127.0.0.1"
    port: int = 5055
    seed: int = 0
    slippage_bps: float = 0.0
    cash: float = 100_000.0
    seed_positions: list[tuple[str, float]] = field(default_factory=list)
    csv_dir: Path | None = None
    symbols: list[str] = field(default_factory=list)
    max_stream_connections: int = 1
    reset_clock: bool = False
    faults: Faults = field(default_factory=Faults)
    sparse: bool = True  # IEX-like: no bar for a minute without trades
    corrections: float = DEFAULT_CORRECTIONS
    halts: list[Halt] = field(default_factory=list)
    splits: list[Split] = field(default_factory=list)
    rate_limit: int = DEFAULT_LIMIT
    trading_blocked: bool = False
    not_tradable: list[str] = field(default_factory=list)
    not_fractionable: list[str] = field(default_factory=list)
    not_shortable: list[str] = field(default_factory=list)
    hard_to_borrow: list[str] = field(default_factory=list)
    accounts: list[AccountSpec] = field(default_factory=list)  # empty: the one account of api_key

    def account_specs(self) -> list[AccountSpec]:
        """The accounts to serve: those listed, else the one of ``api_key``."""
        return self.accounts or [AccountSpec("default", self.api_key, self.secret_key)]


class MarketView:
    """The broker's view of the market at the simulator's current time."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim

    def now(self) -> datetime:
        return self.sim.playback.now()

    def is_open(self) -> bool:
        return session_at(self.now()) is not None

    def price(self, symbol: str) -> float | None:
        return self.sim.bars.price_at(symbol, self.now()) if self.sim.bars.known(symbol) else None

    def prev_close(self, symbol: str) -> float | None:
        return self.sim.bars.prev_close(symbol, self.now()) if self.sim.bars.known(symbol) else None

    def known(self, symbol: str) -> bool:
        return self.sim.bars.known(symbol)

    def exchange(self, symbol: str) -> str:
        info = self.sim.bars.symbols.get(symbol)
        return info.exchange if info else ""

    def halted(self, symbol: str) -> bool:
        return self.sim.bars.rules.halts.halted(symbol, self.now())


class Simulator:
    """State and behaviour of one simulator instance."""

    def __init__(self, cfg: SimConfig) -> None:
        self.cfg = cfg
        check_range(cfg.session_date)
        self.session = session_of(cfg.session_date)
        rules = Rules(cfg.sparse, cfg.corrections, HaltBook(cfg.halts, self.session), SplitBook(cfg.splits))
        try:  # a halt to the close resumes at the next session's open
            self.resume_after_close: datetime | None = next_open_close(self.session.close)[1]
        except ValueError:  # the last session of the calendar
            self.resume_after_close = None
        self.bars = BarStore(cfg.seed, cfg.symbols, cfg.csv_dir, rules=rules)
        self.store = StateStore(cfg.data_dir)
        self.playback = self._load_playback()
        self.faults = cfg.faults
        self.data_hub = DataHub(self.check_auth, self.bars, self.faults, cfg.max_stream_connections)
        self.trade_hub = TradeHub(self.check_auth)
        self.accounts = [self._open_account(spec) for spec in cfg.account_specs()]
        held = [sym for a in self.accounts for sym in a.broker.positions]
        for sym in dict.fromkeys([*(s for s, _ in cfg.seed_positions), *held]):
            self.bars.add_symbol(sym)  # a position outside the universe is still priced and served
        for broker in self.brokers():
            fresh = broker.fresh
            if cfg.seed_positions and fresh:
                for sym, qty in cfg.seed_positions:
                    broker.seed_position(sym, qty)
            self._apply_splits(broker, adjust=not fresh)  # seeded positions were bought after earlier splits
        self.stats = {"corrections_sent": 0, "statuses_sent": 0}
        self.apply_faults()
        self.silent_until: datetime | None = None
        self._fill_handle: asyncio.TimerHandle | None = None

    def _load_playback(self) -> MarketPlayback:
        key = {"date": self.cfg.session_date.isoformat(), "speed": self.cfg.speed, "start": self.cfg.start}
        saved = self.store.get_meta("clock")
        if saved and not self.cfg.reset_clock and all(saved.get(k) == v for k, v in key.items()):
            return MarketPlayback(datetime.fromisoformat(saved["market_anchor"]), saved["speed"], saved["wall_anchor"])
        playback = MarketPlayback(market_instant(self.cfg.session_date, self.cfg.start), self.cfg.speed)
        self.store.save(meta={"clock": {**key, "market_anchor": playback.market_anchor.isoformat(),
                                        "wall_anchor": playback.wall_anchor}})
        return playback

    def _open_account(self, spec: AccountSpec) -> Account:
        """An account's broker on its own store (the simulator's own without ``--account``) and its budget."""
        cfg = self.cfg
        store = StateStore(cfg.data_dir / "accounts" / spec.name) if cfg.accounts else self.store
        broker = Broker(store, MarketView(self), slippage_bps=cfg.slippage_bps, cash=cfg.cash,
                        on_event=functools.partial(self.trade_hub.publish, spec.key),
                        trading_blocked=cfg.trading_blocked,
                        assets=AssetFlags(cfg.not_tradable, cfg.not_fractionable, cfg.not_shortable,
                                          cfg.hard_to_borrow))
        return Account(spec, broker, RateLimiter(cfg.rate_limit, window=WINDOW_SECONDS / cfg.speed))

    def brokers(self) -> list[Broker]:
        return [a.broker for a in self.accounts]

    def account_for(self, key: str, secret: str) -> Account | None:
        """The account these credentials open, if any."""
        return find(self.accounts, key, secret)

    def check_auth(self, key: str, secret: str) -> bool:
        return self.account_for(key, secret) is not None

    def close(self) -> None:
        """Close every store."""
        for broker in self.brokers():
            broker.store.close()
        self.store.close()

    def apply_faults(self) -> None:
        for broker in self.brokers():
            broker.partial_fills = self.faults.partial_fills
            broker.reject_symbols = set(self.faults.reject_symbols)

    def apply_splits(self) -> None:
        """Apply to every account each split whose session has opened."""
        for broker in self.brokers():
            self._apply_splits(broker)

    def _apply_splits(self, broker: Broker, adjust: bool = True) -> None:
        """Apply to an account every split whose session has opened (``adjust=False``: only record them)."""
        now = self.playback.now()
        for split in self.bars.rules.splits.all:
            if session_of(split.day).open <= now:
                broker.apply_split(split.key, split.symbol, split.ratio, adjust)

    def health(self) -> dict[str, Any]:
        """``/sim/health``: market time, connections and counters (per account too with ``--account``)."""
        rules = self.bars.rules
        first = self.accounts[0]
        if self.cfg.accounts:
            counters = totals(self.accounts)
        else:
            counters = {"broker": dict(first.broker.counters), "rate_limit": rate_report(first.rate)}
        out: dict[str, Any] = {
            "status": "ok", "market_time": self.playback.now().isoformat(),
            "data_connections": len(self.data_hub.conns), "trade_connections": len(self.trade_hub.conns),
            "broker": counters["broker"],
            "market": {"sparse": rules.sparse, "corrections": rules.corrections, **self.stats,
                       "splits_applied": first.broker.splits_done()},
            "rate_limit": counters["rate_limit"]}
        if self.cfg.accounts:
            out["accounts"] = {a.name: {
                "data_connections": sum(1 for c in self.data_hub.conns if c.key == a.key),
                "trade_connections": sum(1 for c in self.trade_hub.conns if c.key == a.key),
                "broker": dict(a.broker.counters), "splits_applied": a.broker.splits_done(),
                "rate_limit": rate_report(a.rate)} for a in self.accounts}
        return out

    def drop_streams(self) -> None:
        n = self.data_hub.drop_all(self.faults.refuse_reconnect_seconds) + self.trade_hub.drop_all()
        self.faults.counters["stream_drop_events"] += 1
        self.faults.counters["stream_connections_dropped"] += n
        log.info("dropped %d stream connection(s) at %s", n, self.playback.now().strftime("%H:%M"))

    def silence_from_next_minute(self, minutes: int) -> None:
        """Withhold the bars and statuses of the next ``minutes`` minute boundaries (``silence_now``)."""
        now = self.playback.now()
        self.silent_until = now.replace(second=0, microsecond=0) + timedelta(minutes=1 + minutes)
        self.faults.counters["silence_windows"] += 1

    # -- order fills ----------------------------------------------------------------------------

    def schedule_fills(self, delay: float = 0.005) -> None:
        """Fill working orders shortly (after the current response), if the market is open."""
        if self._fill_handle is None:
            self._fill_handle = asyncio.get_running_loop().call_later(delay, self._fill_now)

    def _fill_now(self) -> None:
        self._fill_handle = None
        remaining = False
        for broker in self.brokers():
            before = broker.counters["rejected_by_exchange"]
            try:
                more = broker.fill_working()
            except Exception:
                log.exception("filling orders failed")
                continue
            self.faults.counters["orders_rejected"] += broker.counters["rejected_by_exchange"] - before
            remaining = remaining or more
        if remaining:
            self.schedule_fills(0.05)

    # -- market-time loop -------------------------------------------------------------------------

    async def run_minutes(self) -> None:
        """At every market minute boundary :meth:`on_minute`, at every half minute :meth:`on_half_minute`."""
        now = self.playback.now()
        last = now.replace(microsecond=0) - timedelta(seconds=now.second % 30)
        if session_at(now):
            self.schedule_fills()
        while True:
            tick = last + HALF_MINUTE
            delay = self.playback.wall_at(tick) - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            try:
                await (self.on_minute(tick) if tick.second == 0 else self.on_half_minute(tick))
            except Exception:
                log.exception("market time %s failed", tick.isoformat())
            last = tick

    def _silent(self, t: datetime) -> bool:
        return self.silent_until is not None and t < self.silent_until

    async def on_half_minute(self, tick: datetime) -> None:
        """Re-send on ``updatedBars`` the corrected bars of the minute that ended 30 s ago."""
        bar_start = tick - CORRECTION_LAG
        if self.bars.rules.corrections > 0 and session_at(bar_start) is not None and not self._silent(tick):
            self.stats["corrections_sent"] += await self.data_hub.push_corrections(bar_start)

    async def on_minute(self, boundary: datetime) -> None:
        hhmm = boundary.astimezone(ET).strftime("%H:%M")
        if hhmm in self.faults.drop_streams_at:
            self.drop_streams()
        for start, minutes in self.faults.silence_at:
            if start == hhmm:
                self.silent_until = boundary + timedelta(minutes=minutes)
                self.faults.counters["silence_windows"] += 1
        bar_start = boundary - MINUTE
        sess = session_at(bar_start)
        if sess is not None:
            if self._silent(boundary):
                self.faults.counters["silent_minutes"] += 1
            else:
                await self.data_hub.push_minute(bar_start, sess.date)
        changes = self.bars.rules.halts.changes(boundary, self.resume_after_close)
        if changes and not self._silent(boundary):
            msgs = [status_message(w, halted, boundary, self.bars.symbols[w.halt.symbol].exchange)
                    for w, halted in changes]
            self.stats["statuses_sent"] += await self.data_hub.push_statuses(msgs)
        now_sess = session_at(boundary)
        if now_sess is not None and boundary == now_sess.open:
            log.info("market open %s", boundary.isoformat())
            self.apply_splits()
        if now_sess is not None and any(b.working() for b in self.brokers()):
            self.schedule_fills(0.0)
        if sess is not None and boundary == sess.close:
            expired = 0
            for broker in self.brokers():
                expired += broker.expire_day_orders(boundary)
                broker.roll_day()
            log.info("market close %s (%d day order(s) expired)", boundary.isoformat(), expired)
