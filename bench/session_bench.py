"""Bar received -> order sent latency inside the live loop, against a simulator and a real Postgres.

Run: ``.venv/bin/python -m bench session_bench``. A whole simulated session, 09:30-16:00 ET, at
speed 600 (about 40 s of wall time) with a strategy that rebalances every minute (about 1,400
orders); the latency is measured from the arrival of the bar that completes a minute to the moment
its order is handed to the HTTP client (a TradingClient in one of the order worker processes);
"broker answer" runs to the moment the broker's reply is back. Everything shares the machine's
cores with the simulator and Postgres; the simulator, standing in for the broker's servers, runs on
SCHED_BATCH (``--background``) so that it yields the cores when an order worker wakes. That run is on
the dense market (a bar for every symbol every minute), so every latency sample starts at a bar.

Then the last 40 minutes of the session at speed 60, once on the IEX-like default market (thin names
miss minutes) and once on the dense one: how late each minute is decided after it ends (market seconds),
and the REST refill calls the session made.
"""

from __future__ import annotations

import tempfile
import time
from datetime import date
from pathlib import Path

from openbell.adapters.alpaca.data import AlpacaMarketData
from openbell.adapters.alpaca.venue import alpaca_venue
from openbell.calendar import previous_sessions
from openbell.clock import clock_for
from openbell.pg.databases import scratch_database
from openbell.pg.throwaway import ephemeral_server
from openbell.ports import Window
from openbell.sim.testing import SimProcess
from openbell.store import db
from openbell.store.bars import upsert_bars
from openbell.strategy import DEFAULT_UNIVERSE, RiskLimits
from openbell.trading import AttemptReport, run_trading_attempt

SESSION = date(2025, 11, 20)
PARAMS = {"lookback": 5, "vol_window": 10, "top_k": 3, "threshold": 0.0, "rebalance_minutes": 1,
          "weighting": "score"}


def _session(tmp: Path, server: str, name: str, *, speed: float, start: str,
             market: str) -> tuple[AttemptReport, float]:
    """One live session on a fresh database and simulator; its report and wall seconds."""
    universe = list(DEFAULT_UNIVERSE)
    with scratch_database(server, prefix=f"bench_{name}") as url:
        db.upgrade(url)
        engine = db.make_engine(url)
        sim_dir = tmp / f"sim-{name}"
        with SimProcess(
            date=SESSION.isoformat(), speed=speed, start=start, data_dir=sim_dir, extra_args=["--background", market]
        ) as sim:
            config = sim.config()
            clock = clock_for(config)
            prior = previous_sessions(SESSION, 2)
            history = AlpacaMarketData(config).bars(universe, Window(prior[0].open, clock.now()))
            upsert_bars(engine, history, source="rest")
            started = time.perf_counter()
            report = run_trading_attempt(
                alpaca_venue(config), engine, SESSION, clock=clock, params_override=PARAMS,
                risk=RiskLimits(max_weight=0.4, daily_loss_limit=None), universe=universe, warmup_sessions=2,
            )
            wall = time.perf_counter() - started
        engine.dispose()
    return report, wall


def run() -> list[tuple[str, float, str]]:
    """Measure and print (name, value, unit) rows."""
    with tempfile.TemporaryDirectory(prefix="ob-session-bench-") as tmp, ephemeral_server(Path(tmp)) as server:
        report, wall = _session(Path(tmp), server, "latency", speed=600, start="09:28", market="--dense")
        markets = {m: _session(Path(tmp), server, m, speed=60, start="15:18", market=f"--{m}")[0]
                   for m in ("sparse", "dense")}
    nan = float("nan")
    rows = [
        ("session: bar->order p50", report.latency_p50_ms or float("nan"), "ms"),
        ("session: bar->order p99", report.latency_p99_ms or float("nan"), "ms"),
        ("session: latency samples", float(report.latency_samples), "orders"),
        ("session: bar->broker answer p50", report.answered_p50_ms or float("nan"), "ms"),
        ("session: bar->broker answer p99", report.answered_p99_ms or float("nan"), "ms"),
        ("session: decisions", float(report.decisions), "minutes"),
        ("session: wall time", wall, "s"),
        ("session: writer max backlog", float(report.writer.get("max_backlog", 0)), "writes"),
    ]
    for market, r in markets.items():
        rows += [
            (f"{market} market: decision lateness p50", r.lateness_p50_s if r.lateness_p50_s is not None else nan,
             "market s"),
            (f"{market} market: decision lateness p99", r.lateness_p99_s if r.lateness_p99_s is not None else nan,
             "market s"),
            (f"{market} market: REST refill calls", float(r.refills), "calls"),
            (f"{market} market: minutes decided without every symbol", float(r.minutes_without_bars), "minutes"),
            (f"{market} market: decisions", float(r.decisions), "minutes"),
        ]
    for name, value, unit in rows:
        print(f"{name:<52} {value:>10.3f} {unit}")
    return rows


if __name__ == "__main__":
    run()
