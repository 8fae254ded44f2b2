"""A long day stays healthy: the trading process's memory, descriptors and database connections at the
first and the last decision of a whole session.

Run: ``.venv/bin/python -m bench health_bench``. A whole simulated session, 09:30-16:00 ET, at speed 120
(about 200 s of wall time) on the IEX-like default market, with a strategy that rebalances every minute.
``run_trading_attempt`` runs in this process (as in the Airflow task, minus Airflow); a sampler thread
watches the decisions table and, when it gains its first row and each later one, reads this process's
resident memory (``VmRSS``) and open descriptors (``/proc/self/fd``), the order worker processes' memory,
and how many connections to the state database ``pg_stat_activity`` lists (the sampler's own left out).
"Last decision" is the last sample taken before the close (the 15:58 minute's decision, or the 15:59 one if
it came before 16:00): the rows after it are written while the session winds down its workers.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

from sqlalchemy import Engine, text

from openbell.adapters.alpaca.data import AlpacaMarketData
from openbell.adapters.alpaca.venue import alpaca_venue
from openbell.calendar import previous_sessions, session
from openbell.clock import MarketClock, cached_now, clock_for
from openbell.pg.databases import scratch_database
from openbell.pg.throwaway import ephemeral_server
from openbell.ports import Window
from openbell.sim.testing import SimProcess
from openbell.store import db
from openbell.store.bars import upsert_bars
from openbell.strategy import DEFAULT_UNIVERSE, RiskLimits
from openbell.trading import run_trading_attempt

SESSION = date(2025, 11, 20)
SPEED = 120.0
PARAMS = {"lookback": 5, "vol_window": 10, "top_k": 3, "threshold": 0.0, "rebalance_minutes": 1,
          "weighting": "score"}


@dataclass(frozen=True)
class Health:
    """One sample of the trading process."""

    decisions: int
    rss_mb: float
    fds: int
    workers: int
    workers_rss_mb: float
    db_connections: int


def rss_mb(pid: int | str = "self") -> float:
    """Resident memory of ``pid`` in MiB (``VmRSS``), 0 when the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def children() -> list[int]:
    """This process's child processes (the order workers)."""
    pids: list[int] = []
    for task in Path("/proc/self/task").iterdir():
        try:
            pids += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            continue
    return pids


def sample(conn_engine: Engine, database: str, decisions: int) -> Health:
    """The trading process now, with ``decisions`` rows in the decisions table."""
    with conn_engine.connect() as conn:
        held = conn.execute(
            text("SELECT count(*) FROM pg_stat_activity WHERE datname = :d AND pid <> pg_backend_pid()"),
            {"d": database},
        ).scalar_one()
    workers = children()
    return Health(decisions, rss_mb(), len(os.listdir("/proc/self/fd")), len(workers),
                  sum(rss_mb(p) for p in workers), int(held))


class Sampler(threading.Thread):
    """Samples :func:`sample` at the first decision row and whenever the table grows."""

    def __init__(self, engine: Engine, database: str, clock: MarketClock, close: datetime,
                 poll: float = 0.1) -> None:
        super().__init__(name="health-sampler", daemon=True)
        self.engine, self.database, self.clock, self.close, self.poll = engine, database, clock, close, poll
        self.first: Health | None = None
        self.last: Health | None = None
        self.stopped = threading.Event()

    def run(self) -> None:
        seen = 0
        while not self.stopped.is_set():
            with self.engine.connect() as conn:
                count = int(conn.execute(text("SELECT count(*) FROM decisions")).scalar_one())
            if count > seen and cached_now(self.clock) < self.close:
                seen = count
                self.last = sample(self.engine, self.database, count)
                self.first = self.first or self.last
            self.stopped.wait(self.poll)


def _close() -> datetime:
    s = session(SESSION)
    assert s is not None
    return s.close


def _day(tmp: Path, server: str) -> tuple[Sampler, float]:
    universe = list(DEFAULT_UNIVERSE)
    with scratch_database(server, prefix="bench_health") as url:
        db.upgrade(url)
        engine = db.make_engine(url)
        watcher = db.make_engine(url, pool_size=1)
        with SimProcess(date=SESSION.isoformat(), speed=SPEED, start="09:28", data_dir=tmp / "sim",
                        extra_args=["--background"]) as sim:
            config = sim.config()
            clock = clock_for(config)
            prior = previous_sessions(SESSION, 2)
            upsert_bars(engine, AlpacaMarketData(config).bars(universe, Window(prior[0].open, clock.now())),
                        source="rest")
            sampler = Sampler(watcher, engine.url.database or "", clock, _close())
            sampler.start()
            started = time.perf_counter()
            try:
                run_trading_attempt(alpaca_venue(config), engine, SESSION, clock=clock, params_override=PARAMS,
                                 risk=RiskLimits(max_weight=0.4, daily_loss_limit=None), universe=universe,
                                 warmup_sessions=2)
            finally:
                wall = time.perf_counter() - started
                time.sleep(1.0)  # the writer's last rows
                sampler.stopped.set()
                sampler.join(10)
        watcher.dispose()
        engine.dispose()
    return sampler, wall


def run() -> list[tuple[str, float, str]]:
    """Measure and print (name, value, unit) rows."""
    with tempfile.TemporaryDirectory(prefix="ob-health-bench-") as tmp, ephemeral_server(Path(tmp)) as server:
        sampler, wall = _day(Path(tmp), server)
    nan = float("nan")
    rows: list[tuple[str, float, str]] = [("whole session wall time", wall, "s")]
    for label, h in (("first decision", sampler.first), ("last decision", sampler.last)):
        rows += [
            (f"{label}: decisions recorded", float(h.decisions) if h else nan, "rows"),
            (f"{label}: trading process resident memory", h.rss_mb if h else nan, "MiB"),
            (f"{label}: trading process open descriptors", float(h.fds) if h else nan, "fds"),
            (f"{label}: order workers", float(h.workers) if h else nan, "processes"),
            (f"{label}: order workers resident memory", h.workers_rss_mb if h else nan, "MiB"),
            (f"{label}: state database connections held", float(h.db_connections) if h else nan, "conns"),
        ]
    for name, value, unit in rows:
        print(f"{name:<52} {value:>10.3f} {unit}")
    return rows


if __name__ == "__main__":
    run()
