"""What every drill is made of: the drill's description and the means to watch a rehearsed day (market
time, the step ledger) and to kill a step's process. :mod:`openbell.runtime.drills` holds the drills and
the morning-after checks; :mod:`~openbell.runtime.platform_drills` and :mod:`~openbell.runtime.control_drills`
add the drills of Airflow's own failures and of the operator's controls."""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import text

from openbell import calendar
from openbell.accounts import RUN_FIELDS
from openbell.runtime.rehearsal import Rehearsal
from openbell.store.ledger import steps_for
from openbell.store.scope import NAME_MAX

log = logging.getLogger(__name__)

DAY = date(2025, 11, 20)
EVERY_STEP = ("wait_for_open", "download", "todays_bars", "reconcile", "live_trading", "midday_optimize",
              "eod_liquidate")
Inject = Callable[[Rehearsal, dict[str, Any]], None]
# The deployment's run parameters of drills that need many orders: a strategy that rebalances every minute on
# score weights, whatever the day's default strategy would hold (the request budget, buying power, a resume).
CHURN = ('{"strategy_params": {"lookback": 5, "vol_window": 10, "top_k": 3, "threshold": 0.0, '
         '"rebalance_minutes": 1, "weighting": "score"}}')


@dataclass(frozen=True)
class Drill:
    """One fault scenario: where the simulated day starts, how fast it runs, what goes wrong."""

    name: str
    about: str
    date: date = DAY
    start: str = "14:15"  # at 120x the data steps and the loop's start-up take 35-45 market minutes: trading by 15:00
    speed: float = 120.0
    sim_args: tuple[str, ...] = ()
    inject: Inject | None = None
    separate_state_server: bool = False
    held: tuple[str, ...] = ()  # symbols a halt keeps open past the close: eod_liquidate must fail naming them
    run_defaults: str = ""  # the deployment's run parameters (JSON, OPENBELL_RUN_DEFAULTS) for the scheduled run
    breaks_airflow: bool = False  # kills or restarts Airflow's own processes

    @property
    def shares_stage(self) -> bool:
        """Whether the drill may run on a stage shared with other drills
        (:class:`openbell.runtime.drill_stage.DrillStage`): one that leaves Airflow's processes alone, on the
        default day, with run parameters its account's entry in an accounts file can carry."""
        return self.date == DAY and not self.breaks_airflow and self.account_settings is not None

    @property
    def account_settings(self) -> dict[str, Any] | None:
        """The drill's run parameters (:attr:`run_defaults`) as keys of its account's entry in an accounts file
        (:data:`openbell.accounts.RUN_FIELDS`); None when an account cannot carry them all."""
        values = json.loads(self.run_defaults) if self.run_defaults else {}
        return values if set(values) <= set(RUN_FIELDS) else None

    @property
    def account(self) -> str:
        """The account the drill trades as on a shared stage: its name, cut to an account name's length."""
        return self.name[:NAME_MAX].rstrip("_")


# -- observing the day ----------------------------------------------------------------------------


def market_now(day: Rehearsal) -> datetime:
    return datetime.fromisoformat(day.sim.clock()["market_time"]).astimezone(calendar.ET)


def wait_for(what: str, check: Callable[[], Any], *, timeout: float = 300.0, poll: float = 0.1) -> Any:
    """Poll ``check`` until it returns something truthy; TimeoutError naming ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(poll)
    raise TimeoutError(f"gave up waiting for {what} after {timeout:.0f}s")


def session_date(day: Rehearsal) -> date:
    """The session the rehearsal plays."""
    return date.fromisoformat(day.sim.date)


def running_attempt(day: Rehearsal, step: str) -> dict[str, Any] | None:
    """The ledger row of ``step``'s attempt that is running now, if any."""
    rows = [r for r in steps_for(day.engine, session_date(day)) if r["step"] == step and r["status"] == "running"]
    return rows[-1] if rows else None


def phase(day: Rehearsal) -> str | None:
    with day.engine.connect() as conn:
        return conn.execute(text("SELECT phase FROM trading_sessions WHERE session_date = :d"),
                            {"d": session_date(day)}).scalar()


def market_at(day: Rehearsal, hhmm: str) -> bool:
    h, m = (int(x) for x in hhmm.split(":"))
    now = market_now(day)
    return (now.hour, now.minute) >= (h, m)


def kill_attempt(day: Rehearsal, step: str, facts: dict[str, Any]) -> dict[str, Any]:
    """SIGKILL the process of ``step``'s running attempt (as a dying worker would) and note when."""
    row = wait_for(f"a running {step} attempt", lambda: running_attempt(day, step))
    pid = int(row["summary"]["process"]["pid"])
    os.kill(pid, signal.SIGKILL)
    facts.setdefault("killed", []).append(
        {"step": step, "attempt": row["attempt"], "pid": pid, "market_time": market_now(day).isoformat()}
    )
    log.info("killed %s attempt %s (pid %s)", step, row["attempt"], pid)
    return row


def task_state(day: Rehearsal, task_id: str) -> str:
    return str(day.stack.task_instance(day.run_id, task_id).get("state") or "none")


def attempts(day: Rehearsal, step: str) -> list[dict[str, Any]]:
    """The ledger rows of ``step``'s attempts, oldest first."""
    return [r for r in steps_for(day.engine, session_date(day)) if r["step"] == step]
