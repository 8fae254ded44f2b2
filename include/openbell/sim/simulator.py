"""One simulator instance: its configuration, its state (broker, bars, streams, faults, market time) and
the market-time loop that pushes bars at every minute boundary, fills queued orders at the open and
applies timed faults. :mod:`openbell.sim.server` serves it over HTTP."""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

from openbell.calendar import ET
from openbell.sim.broker import Broker
from openbell.sim.faults import Faults
from openbell.sim.feed import BarStore
from openbell.sim.playback import MarketPlayback, check_range, market_instant, session_at
from openbell.sim.store import StateStore
from openbell.sim.streams import DataHub, TradeHub

log = logging.getLogger("openbell.sim")
MINUTE = timedelta(minutes=1)


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


class Simulator:
    """State and behaviour of one simulator instance."""

    def __init__(self, cfg: SimConfig) -> None:
        self.cfg = cfg
        check_range(cfg.session_date)
        self.bars = BarStore(cfg.seed, cfg.symbols, cfg.csv_dir)
        self.store = StateStore(cfg.data_dir)
        self.playback = self._load_playback()
        self.faults = cfg.faults
        self.data_hub = DataHub(self.check_auth, self.bars, self.faults, cfg.max_stream_connections)
        self.trade_hub = TradeHub(self.check_auth)
        self.broker = Broker(self.store, MarketView(self), slippage_bps=cfg.slippage_bps, cash=cfg.cash,
                             on_event=self.trade_hub.publish)
        if cfg.seed_positions and self.broker.fresh:
            for sym, qty in cfg.seed_positions:
                self.broker.seed_position(sym, qty)
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

    def check_auth(self, key: str, secret: str) -> bool:
        return hmac.compare_digest(key.encode(), self.cfg.api_key.encode()) and hmac.compare_digest(
            secret.encode(), self.cfg.secret_key.encode())

    def apply_faults(self) -> None:
        self.broker.partial_fills = self.faults.partial_fills
        self.broker.reject_symbols = set(self.faults.reject_symbols)

    def drop_streams(self) -> None:
        n = self.data_hub.drop_all(self.faults.refuse_reconnect_seconds) + self.trade_hub.drop_all()
        self.faults.counters["stream_drop_events"] += 1
        self.faults.counters["stream_connections_dropped"] += n
        log.info("dropped %d stream connection(s) at %s", n, self.playback.now().strftime("%H:%M"))

    # -- order fills ----------------------------------------------------------------------------

    def schedule_fills(self, delay: float = 0.005) -> None:
        """Fill working orders shortly (after the current response), if the market is open."""
        if self._fill_handle is None:
            self._fill_handle = asyncio.get_running_loop().call_later(delay, self._fill_now)

    def _fill_now(self) -> None:
        self._fill_handle = None
        before = self.broker.counters["rejected_by_exchange"]
        try:
            remaining = self.broker.fill_working()
        except Exception:
            log.exception("filling orders failed")
            return
        self.faults.counters["orders_rejected"] += self.broker.counters["rejected_by_exchange"] - before
        if remaining:
            self.schedule_fills(0.05)

    # -- market-time loop -------------------------------------------------------------------------

    async def run_minutes(self) -> None:
        """At every market minute boundary: faults, bars to subscribers, fills at the open."""
        last = self.playback.now().replace(second=0, microsecond=0)
        if session_at(self.playback.now()):
            self.schedule_fills()
        while True:
            boundary = last + MINUTE
            delay = self.playback.wall_at(boundary) - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            try:
                await self.on_minute(boundary)
            except Exception:
                log.exception("minute %s failed", boundary.isoformat())
            last = boundary

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
            if self.silent_until is not None and boundary < self.silent_until:
                self.faults.counters["silent_minutes"] += 1
            else:
                await self.data_hub.push_minute(bar_start, sess.date)
        now_sess = session_at(boundary)
        if now_sess is not None and boundary == now_sess.open:
            log.info("market open %s", boundary.isoformat())
        if now_sess is not None and self.broker.working():
            self.schedule_fills(0.0)
        if sess is not None and boundary == sess.close:
            self.broker.roll_day()
            log.info("market close %s", boundary.isoformat())
