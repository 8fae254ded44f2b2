"""Three accounts' trading days at once, on CeleryExecutor, against one simulator that serves a key per account:
each account trades its own strategy on its own key and state, and nothing crosses over. The day is the half day
after Thanksgiving: the optimization and the liquidation move with the early close. Two workers take the trading
queue; once every account trades, the one running most of them is killed with its whole session (SIGKILL), and
its accounts' next attempts resume on the other."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

import pytest
from alpaca.trading.enums import QueryOrderStatus
from alpaca.trading.requests import GetOrdersRequest
from sqlalchemy import text

from e2e.test_trading_day import STRATEGIES
from openbell.adapters.alpaca.data import AlpacaMarketData
from openbell.calendar import ET
from openbell.params import DEFAULT_UNIVERSE
from openbell.pg.throwaway import reachable_tempdir
from openbell.runtime.accounts_rehearsal import rehearse_accounts
from openbell.runtime.drills import missing_minutes
from openbell.runtime.redis_server import REDIS_BIN
from openbell.runtime.rehearsal import DayResult, Rehearsal
from openbell.runtime.worker_kill import WorkerKill, kill_a_trading_worker
from openbell.store.db import make_engine
from openbell.store.scope import shared_url

pytestmark = [pytest.mark.e2e, pytest.mark.alone]  # three accounts' days and four Celery workers: both cores busy
log = logging.getLogger(__name__)

# skipped without Redis on a developer's machine; in CI (make test installs it) its absence fails
needs_redis = pytest.mark.skipif(shutil.which(REDIS_BIN) is None and not os.environ.get("CI"),
                                 reason="Debian's redis-server is not installed (`make redis` installs it)")


def _worker_tasks(day: Rehearsal) -> dict[str, set[str]]:
    """The tasks each Celery worker ran, from its log (none on LocalExecutor)."""
    logs = day.stack.home / "logs"
    return {name: set(re.findall(r"task_id='([a-z_]+)'", (logs / f"{name}.log").read_text(errors="replace")))
            for name in day.stack.process_names if name.startswith("worker-")}


HALF_DAY = date(2025, 11, 28)  # the close is 13:00 ET: the search at 11:30, the liquidation at 12:58
PLUG_IN = "ob_example:Leaders"
CAP = 15000.0  # gamma's own ceiling on one order's notional (the deployment has none)
ACCOUNTS: dict[str, dict[str, Any]] = {
    "alpha": {},  # the deployment's default strategy
    "beta": {"strategy": PLUG_IN},  # a plug-in outside the package
    "gamma": {"max_order_notional": CAP},  # the default strategy under a tighter ceiling of its own
}


def _broker(day: Rehearsal, name: str) -> dict[str, Any]:
    client = day.sim.config(name).trading_client()
    orders = client.get_orders(GetOrdersRequest(status=QueryOrderStatus.ALL, limit=500, nested=False))
    return {"client_order_ids": [o.client_order_id for o in orders],
            "notionals": [float(o.qty or 0) * float(o.filled_avg_price or 0) for o in orders
                          if (o.client_order_id or "").startswith("ob-")],
            "positions": {p.symbol: float(p.qty) for p in client.get_all_positions()}}


@needs_redis
def test_three_accounts_trade_one_half_day_at_once_on_celery_and_nothing_crosses_over(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(STRATEGIES), os.environ.get("PYTHONPATH")])))
    seen: dict[str, Any] = {}
    kills: list[WorkerKill] = []

    def at_end(days: dict[str, Rehearsal]) -> None:
        for name, day in days.items():
            seen[name] = _broker(day, name)
            with day.engine.connect() as conn:  # the limits that refused the account's orders, from its journal
                seen[name]["refused_by"] = set(conn.execute(text(
                    "SELECT payload->>'limit' FROM events WHERE kind = 'order_refused'")).scalars())
        first = next(iter(days.values()))
        seen["workers"] = _worker_tasks(first)
        data = AlpacaMarketData(first.sim.config("alpha"))
        seen["holes"] = missing_minutes(first.engine, HALF_DAY, DEFAULT_UNIVERSE, data)
        shared = make_engine(shared_url(first.state_url))
        try:
            with shared.connect() as conn:
                seen["default_account_rows"] = conn.execute(text(
                    "SELECT (SELECT count(*) FROM orders) + (SELECT count(*) FROM step_runs)")).scalar()
                seen["bars"] = conn.execute(text("SELECT count(*) FROM bars")).scalar()
        finally:
            shared.dispose()

    home = reachable_tempdir(tmp_path, "openbell-e2e-")
    try:
        # from 10:00: at 120x a lost worker's accounts wait about 90 market minutes for their retry (the missed
        # heartbeats, the scheduler's restart, the task's start), which must come before the 12:58 liquidation
        results = rehearse_accounts(HALF_DAY, ACCOUNTS, home=home, start="10:00", executor="celery",
                                    trading_workers=2, progress=log.info,
                                    on_running=lambda days: kills.append(kill_a_trading_worker(days)),
                                    on_finished=at_end)
        # what a user runs next, with nothing but the home the rehearsal used
        env = {k: v for k, v in os.environ.items() if k != "OPENBELL_DATABASE_URL"} | {"OPENBELL_HOME": str(home)}
        cli = Path(sys.executable).with_name("openbell")
        seen["report_cli"] = subprocess.run(
            [str(cli), "report", "--date", HALF_DAY.isoformat(), "--account", "beta", "--json"], env=env,
            capture_output=True, text=True, timeout=120)
    finally:
        shutil.rmtree(home, ignore_errors=True)

    every_id: list[str] = []
    for name, result in results.items():
        steps = {s["step"]: s for s in result.report["steps"]}
        assert result.run_state == "success", (name, result.task_states)
        assert steps["eod_liquidate"]["status"] == "success" and result.report["flat_at_close"] is True, name
        assert seen[name]["positions"] == {}, name  # the broker holds nothing of any account after the close
        if name != "gamma":  # gamma's cap may refuse every order of the day (asserted below)
            assert any(o["origin"] == "strategy" and o["status"] == "filled" for o in result.report["orders"]), name
        ours = [i for i in seen[name]["client_order_ids"] if i.startswith("ob-")]
        assert (ours or name == "gamma") and all(i.startswith(f"ob-{name}-20251128-") for i in ours), (name, ours[:5])
        # the account's book holds its own orders only: every one of them is at its own key's broker
        assert {o["client_order_id"] for o in result.report["orders"]} <= set(seen[name]["client_order_ids"]), name
        every_id += seen[name]["client_order_ids"]
        _moved_with_the_early_close(name, result)
    assert len(every_id) == len(set(every_id))  # no client_order_id repeats across accounts
    # gamma's own ceiling refused its larger orders, and none over it reached the broker (a fill may slip a little);
    # the others, without it, were never refused by it
    assert "max_order_notional" in seen["gamma"]["refused_by"], seen["gamma"]["refused_by"]
    assert max(seen["gamma"]["notionals"], default=0.0) <= CAP * 1.01, seen["gamma"]["notionals"]
    assert not any("max_order_notional" in seen[n]["refused_by"] for n in ("alpha", "beta"))
    assert seen["default_account_rows"] == 0 and seen["bars"] > 0  # state per account; bars shared
    # every account's live_trading ran on the trading queue's workers, every other step on the default queue's
    trading = [tasks for worker, tasks in seen["workers"].items() if worker.startswith("worker-trading")]
    assert len(trading) == 2 and set().union(*trading) == {"live_trading"}, seen["workers"]
    assert "live_trading" not in seen["workers"]["worker-default"], seen["workers"]
    # the killed worker's accounts (their runs succeeded and they were flat, above) resumed on the other one
    kill = kills[0]
    assert kill.killed and sorted(kill.moved()) == sorted(kill.killed), kill
    assert all(at.astimezone(ET).time() < time(12, 58) for at in kill.resumed_at.values()), kill
    assert seen["holes"] == {}  # all 210 minutes of the short session, for every symbol
    # `openbell report --date D --account NAME --json` right after the rehearsal prints that account's day
    done = seen["report_cli"]
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    assert printed["session"] == "2025-11-28" and printed["flat_at_close"] is True
    assert [s["step"] for s in printed["steps"]] == [s["step"] for s in results["beta"].report["steps"]]
    assert {o["client_order_id"] for o in printed["orders"]} == {
        o["client_order_id"] for o in results["beta"].report["orders"]}


def _moved_with_the_early_close(name: str, result: DayResult) -> None:
    """The close is 13:00 ET: the search starts at 11:30 (90 minutes before it, not 14:30), the decisions stop
    before it and the liquidation finishes by 12:58-13:00; the search's version, if any, was hot-loaded."""
    steps = {s["step"]: s for s in result.report["steps"]}
    optimized = steps["midday_optimize"]["summary"]
    assert optimized["strategy"] == (PLUG_IN if name == "beta" else "momentum_rotation"), name
    assert optimized["evaluated"] > 1, (name, optimized)
    # due at 11:30 (not 14:30, after this close); Airflow starts a task in wall time, and three accounts' searches
    # of two processes each share 2 cores at 120x (one started at 12:49): the check is that it starts at its time
    # and before the liquidation, not how fast Airflow is
    optimized_at = datetime.fromisoformat(optimized["market_time"]).astimezone(ET)
    assert time(11, 30) <= optimized_at.time() < time(12, 58), (name, optimized_at)
    if optimized["new_version"] is not None:  # hot-loaded: the decisions after it used it
        used = [u for u in result.report["param_versions_used"] if u["id"] == optimized["new_version"]]
        assert used and used[0]["decisions"] > 0, (name, result.report["param_versions_used"])
    finished = datetime.fromisoformat(steps["eod_liquidate"]["summary"]["finished_at"]).astimezone(ET)
    assert time(12, 58) <= finished.time() <= time(13, 0), (name, finished)
    last = max(datetime.fromisoformat(str(u["last_used"])) for u in result.report["param_versions_used"]
               if u["last_used"]).astimezone(ET)
    assert last.time() < time(13, 0), (name, last)
