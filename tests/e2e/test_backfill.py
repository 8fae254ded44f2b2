"""A 5-session backfill through a real scheduler: each session downloaded, live-only steps skipped."""

from __future__ import annotations

import shutil
import time
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import text

from dates import SESSION as DAY
from openbell import calendar
from openbell.adapters.alpaca.data import AlpacaMarketData
from openbell.params import DEFAULT_UNIVERSE
from openbell.pg.throwaway import reachable_tempdir
from openbell.ports import Window
from openbell.runtime.airflow import TERMINAL, AirflowStack
from openbell.runtime.rehearsal import DEMO_KEY, DEMO_SECRET, fresh_databases
from openbell.sim.testing import SimProcess
from openbell.store.db import make_engine, upgrade
from openbell.store.ledger import steps_for

pytestmark = pytest.mark.e2e

BACKFILL = [date(2025, 11, d) for d in (13, 14, 17, 18, 19)]
LIVE_ONLY = ("todays_bars", "reconcile", "live_trading", "midday_optimize", "eod_liquidate")


def test_backfill_downloads_each_session_and_skips_the_live_steps(tmp_path: Path) -> None:
    home = reachable_tempdir(tmp_path, "openbell-e2e-")
    servers = []
    try:
        state_url, airflow_url, servers = fresh_databases(home, "backfill")
        upgrade(state_url)
        # The simulated market is after the close of DAY: nothing is live.
        sim = SimProcess(date=DAY.isoformat(), speed=1, start="17:00", data_dir=home / "sim",
                         key=DEMO_KEY, secret=DEMO_SECRET)
        with sim, AirflowStack(home / "airflow", airflow_url, state_url, sim.config(),
                               extra_env={"OPENBELL_DAG_END_DATE": DAY.isoformat()}) as stack:
            out = stack.airflow("backfill", "create", "--dag-id", "trading_day", "--from-date",
                                BACKFILL[0].isoformat(), "--to-date", f"{BACKFILL[-1].isoformat()}T23:59:00+00:00",
                                "--max-active-runs", "3", check=False)
            assert out.returncode == 0, out.stderr[-2000:]
            runs = _wait_for_backfill(stack, len(BACKFILL), timeout=600)
            data = AlpacaMarketData(sim.config())
            served = {day: len(data.bars(list(DEFAULT_UNIVERSE), Window(s.open, s.close)))
                      for day in BACKFILL if (s := calendar.session(day)) is not None}
        engine = make_engine(state_url)
        assert sorted(r["session"] for r in runs) == BACKFILL
        assert all(r["run_type"] == "backfill" and r["state"] == "success" for r in runs), runs
        for day in BACKFILL:
            ledger = {row["step"]: row for row in steps_for(engine, day)}
            assert ledger["wait_for_open"]["status"] == "success"  # a past open: no wait
            assert ledger["download"]["status"] == "success"
            for step in LIVE_ONLY:
                assert ledger[step]["status"] == "skipped", (day, step, ledger.get(step))
                assert "backfill" in ledger[step]["summary"]["reason"]
            s = calendar.session(day)
            assert s is not None
            with engine.connect() as conn:
                n = conn.execute(text("SELECT count(*) FROM bars WHERE ts >= :a AND ts < :b"),
                                 {"a": s.open, "b": s.close}).scalar_one()
            assert n == served[day] > 0  # every bar the broker has (a minute without trades has none)
            assert ledger["download"]["summary"]["gaps"]["missing_minutes"] == 0
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(home, ignore_errors=True)


def _wait_for_backfill(stack: AirflowStack, expected: int, timeout: float) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stack.check_alive()
        runs = [r for r in stack.dag_runs() if r.get("run_type") == "backfill"]
        done = [r for r in runs if r.get("state") in TERMINAL | {"success", "failed"}]
        if len(runs) >= expected and len(done) == len(runs):
            return [
                {"session": calendar.session_for_run(
                    _dt(r["logical_date"]) if r.get("logical_date") else None, _dt(r["run_after"])).date,
                 "run_type": r["run_type"], "state": r["state"]}
                for r in runs
            ]
        time.sleep(2)
    raise TimeoutError(f"backfill did not finish: {stack.dag_runs()}")


def _dt(value: str):
    from datetime import datetime

    return datetime.fromisoformat(value)
