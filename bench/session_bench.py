"""Bar received -> order sent latency inside the live loop, against a simulator and a real Postgres.

Run: ``.venv/bin/python -m bench session_bench``. A whole simulated session, 09:30-16:00 ET, at
speed 600 (about 40 s of wall time) with a strategy that rebalances every minute (about 1,400
orders); the latency is measured from the arrival of the bar that completes a minute to the moment
its order is handed to the HTTP client (a TradingClient in one of the order worker processes);
"broker answer" runs to the moment the broker's reply is back. Everything shares the machine's
cores with the simulator and Postgres; the simulator, standing in for the broker's servers, runs on
SCHED_BATCH (``--background``) so that it yields the cores when an order worker wakes.
"""

from __future__ import annotations

import tempfile
import time
from datetime import date
from pathlib import Path

from openbell.adapters.alpaca.data import AlpacaMarketData
from openbell.calendar import previous_sessions
from openbell.clock import clock_for
from openbell.pg import ephemeral_server, scratch_database
from openbell.ports import Window
from openbell.session import run_live_session
from openbell.sim.testing import SimProcess
from openbell.store import db
from openbell.store.bars import upsert_bars
from openbell.strategy import DEFAULT_UNIVERSE, RiskLimits

SESSION = date(2025, 11, 20)
PARAMS = {"lookback": 5, "vol_window": 10, "top_k": 3, "threshold": 0.0, "rebalance_minutes": 1,
          "weighting": "score"}


def run() -> list[tuple[str, float, str]]:
    """Measure and print (name, value, unit) rows."""
    universe = list(DEFAULT_UNIVERSE)
    with (
        tempfile.TemporaryDirectory(prefix="ob-session-bench-") as tmp,
        ephemeral_server(Path(tmp)) as server,
        scratch_database(server, prefix="bench_session") as url,
    ):
        db.upgrade(url)
        engine = db.make_engine(url)
        sim_dir = Path(tmp) / "sim"
        with SimProcess(
            date=SESSION.isoformat(), speed=600, start="09:28", data_dir=sim_dir, extra_args=["--background"]
        ) as sim:
            config = sim.config()
            clock = clock_for(config)
            prior = previous_sessions(SESSION, 2)
            history = AlpacaMarketData(config).bars(universe, Window(prior[0].open, clock.now()))
            upsert_bars(engine, history, source="rest")
            started = time.perf_counter()
            report = run_live_session(
                config, engine, SESSION, clock=clock, params_override=PARAMS,
                risk=RiskLimits(max_weight=0.4, daily_loss_limit=None), universe=universe, warmup_sessions=2,
            )
            wall = time.perf_counter() - started
        engine.dispose()
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
    for name, value, unit in rows:
        print(f"{name:<32} {value:>10.3f} {unit}")
    return rows


if __name__ == "__main__":
    run()
