"""Drills for Airflow's own failures: its processes killed and restarted, its api-server down, short tokens.

Each drill runs a simulated session through the real scheduler (like every drill in
:mod:`openbell.runtime.drills`, which registers these) and ends with the same morning-after checks.
The faults are process-level: :class:`~openbell.runtime.airflow.AirflowStack` kills a process together
with every process of its session, as the crash of its machine or container would.

A rehearsal runs the market 60-120 times faster than the wall, but Airflow's own timers count wall
seconds. Where recovery waits on one of them (a dead task's heartbeat timeout, 300 s by default: ten
market hours at 120x), the restarted scheduler gets it shortened in proportion; nothing else is changed.
"""

from __future__ import annotations

import itertools
import time
from datetime import datetime, timedelta
from typing import Any

import requests
from sqlalchemy import text

from openbell import calendar
from openbell.runtime.drill_kit import Drill, Inject
from openbell.runtime.drill_kit import attempts as _attempts
from openbell.runtime.drill_kit import market_at as _at
from openbell.runtime.drill_kit import market_now as _now
from openbell.runtime.drill_kit import running_attempt as _running
from openbell.runtime.drill_kit import session_date as _session_date
from openbell.runtime.drill_kit import wait_for as _wait
from openbell.runtime.rehearsal import Rehearsal
from openbell.store.ledger import ABANDONED

DEFERRED = ("midday_optimize", "eod_liquidate")
API_DOWN_SECONDS = 180.0
TOKEN_LIFETIME = 30
# Airflow's 300 s timers for dead tasks compressed like the day: the heartbeat timeout (tasks the new
# scheduler queued) and the orphan check (tasks the dead scheduler queued, reset once its job is 30 s stale),
# so a dead trading task is retried within about a minute of wall time instead of ten market hours.
COMPRESSED_TIMERS = {"AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "15",
                     "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": "15"}


# -- observing the day ----------------------------------------------------------------------------


def _clock(day: Rehearsal) -> tuple[datetime, datetime, float]:
    c = day.sim.clock()
    return (datetime.fromisoformat(c["market_time"]).astimezone(calendar.ET), datetime.fromisoformat(c["wall_time"]),
            float(c["speed"]))


def market_of(day: Rehearsal, wall: datetime) -> datetime:
    """The market time at the wall time ``wall`` (aware), from the simulator's published mapping."""
    market, at, speed = _clock(day)
    return market + (wall - at) * speed


def _wait_market(day: Rehearsal, when: datetime) -> None:
    _wait(f"market time {when:%H:%M}", lambda: _now(day) >= when, timeout=600)


def _decisions(day: Rehearsal) -> int:
    with day.engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM decisions WHERE session_date = :d"),
                                {"d": _session_date(day)}).scalar_one())


def _trading_from(day: Rehearsal, hhmm: str) -> dict[str, Any]:
    """The running live_trading attempt once it is ``hhmm`` and the attempt has decided minutes."""
    row = _wait(f"live trading at {hhmm}", lambda: _at(day, hhmm) and _decisions(day) > 0
                and _running(day, "live_trading"), timeout=600)
    return dict(row)


def _next_trader(day: Rehearsal, killed: dict[str, Any], facts: dict[str, Any], timeout: float = 240) -> None:
    """Wait for the next live_trading attempt after ``killed``; note when it started, in market time."""
    row = _wait("the next live_trading attempt",
                lambda: (r := _running(day, "live_trading")) and r["id"] != killed["id"] and r, timeout=timeout)
    facts["resumed_at"] = market_of(day, row["started"]).isoformat()
    facts["resumed_attempt"] = row["attempt"]


def _api_up(day: Rehearsal) -> bool:
    try:
        return requests.get(f"{day.stack.api_url}/api/v2/monitor/health", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def trading_overlaps(attempts: list[dict[str, Any]]) -> list[str]:
    """Pairs of live_trading attempts that ran at once while both alive: one that was killed is counted
    as running until its successor marked it abandoned, so only live overlaps are named."""
    rows = sorted(attempts, key=lambda r: r["started"])
    bad = []
    for a, b in itertools.combinations(rows, 2):
        ended = a["ended"] or datetime.max.replace(tzinfo=b["started"].tzinfo)
        if ended > b["started"] and a["error"] != ABANDONED:
            bad.append(f"attempt {a['attempt']} ({a['status']}) still ran when attempt {b['attempt']} started")
    return bad


def _record_trading(day: Rehearsal, facts: dict[str, Any]) -> None:
    """After trading ended: each live_trading attempt's span in market time, and any overlap."""
    _wait("live trading to end", lambda: _at(day, "15:58") and not _running(day, "live_trading"), timeout=900)
    rows = _attempts(day, "live_trading")
    facts["trading_attempts"] = [
        {"attempt": r["attempt"], "status": r["status"], "started": market_of(day, r["started"]).isoformat(),
         "ended": r["ended"] and market_of(day, r["ended"]).isoformat(), "abandoned": r["error"] == ABANDONED}
        for r in rows
    ]
    facts["trading_overlaps"] = trading_overlaps(rows)


# -- the faults -----------------------------------------------------------------------------------


def _hhmm(at: str, plus: timedelta = timedelta()) -> str:
    return f"{datetime.strptime(at, '%H:%M') + plus:%H:%M}"


def scheduler_restart(at: str) -> Inject:
    """The scheduler (and the task processes under it) SIGKILLed at ``at`` once trading has decided
    minutes, and started again 2 market minutes later."""

    def inject(day: Rehearsal, facts: dict[str, Any]) -> None:
        facts["planned"] = {"at": at}
        row = _trading_from(day, at)
        facts["trading_pid"] = int(row["summary"]["process"]["pid"])
        facts["killed_at"] = _now(day).isoformat()
        facts["killed_pids"] = day.stack.kill("scheduler")
        _wait_market(day, datetime.fromisoformat(facts["killed_at"]) + timedelta(minutes=2))
        facts["restarted_at"] = _now(day).isoformat()
        day.stack.restart("scheduler", env=COMPRESSED_TIMERS)
        _next_trader(day, row, facts)

    return inject


def _deferred(day: Rehearsal) -> bool:
    return all(day.stack.task_instance(day.run_id, t).get("state") == "deferred" for t in DEFERRED)


def triggerer_restart(at: str) -> Inject:
    """The triggerer SIGKILLed at ``at`` or later, once midday_optimize and eod_liquidate are deferred, and
    started again 20 market minutes later."""

    def inject(day: Rehearsal, facts: dict[str, Any]) -> None:
        facts["planned"] = {"at": at}
        _wait("midday_optimize and eod_liquidate deferred", lambda: _at(day, at) and _deferred(day), timeout=600)
        facts["killed_at"] = _now(day).isoformat()
        facts["killed_pids"] = day.stack.kill("triggerer")
        _wait_market(day, datetime.fromisoformat(facts["killed_at"]) + timedelta(minutes=20))
        facts["deferred_while_down"] = _deferred(day)
        facts["restarted_at"] = _now(day).isoformat()
        day.stack.restart("triggerer")
        for step in DEFERRED:
            row = _wait(f"{step} to act", lambda s=step: _attempts(day, s), timeout=900)[0]
            facts[f"{step}_at"] = market_of(day, row["started"]).isoformat()

    return inject


def api_server_outage(at: str, down_seconds: float) -> Inject:
    """The api-server SIGKILLed at ``at`` while live_trading runs, and started again ``down_seconds`` wall
    seconds later."""

    def inject(day: Rehearsal, facts: dict[str, Any]) -> None:
        facts["planned"] = {"at": at, "down_seconds": down_seconds}
        row = _trading_from(day, at)
        facts["trading_pid"] = int(row["summary"]["process"]["pid"])
        facts["down_at"] = _now(day).isoformat()
        facts["killed_pids"] = day.stack.kill("api-server")
        down = time.monotonic()
        time.sleep(down_seconds)
        day.stack.restart("api-server")
        _wait("the api-server", lambda: _api_up(day), timeout=120)
        facts["down_wall_seconds"] = round(time.monotonic() - down, 1)
        facts["up_at"] = _now(day).isoformat()
        _record_trading(day, facts)
        with day.engine.connect() as conn:
            facts["decisions_after_outage"] = int(conn.execute(
                text("SELECT count(*) FROM decisions WHERE session_date = :d AND ts > :t"),
                {"d": _session_date(day), "t": datetime.fromisoformat(facts["up_at"])},
            ).scalar() or 0)

    return inject


def stack_restart(at: str) -> Inject:
    """Every Airflow process SIGKILLed at ``at`` once trading has decided minutes (a power cut), and the
    stack started again 20 market minutes after ``at``."""

    def inject(day: Rehearsal, facts: dict[str, Any]) -> None:
        back = _hhmm(at, timedelta(minutes=20))
        facts["planned"] = {"at": at, "restart_at": back}
        row = _trading_from(day, at)
        facts["trading_pid"] = int(row["summary"]["process"]["pid"])
        facts["killed_at"] = _now(day).isoformat()
        facts["killed_pids"] = day.stack.kill_all()
        hour, minute = map(int, back.split(":"))
        _wait_market(day, datetime.fromisoformat(facts["killed_at"]).replace(hour=hour, minute=minute, second=0))
        facts["restarted_at"] = _now(day).isoformat()
        day.stack.extra_env = {**day.stack.extra_env, **COMPRESSED_TIMERS}
        day.stack.start()
        day.stack.wait_ready()
        facts["restarted"] = sorted(day.stack.procs)
        _next_trader(day, row, facts)

    return inject


def short_tokens(day: Rehearsal, facts: dict[str, Any]) -> None:
    """Restart the api-server with a 30 s execution-token lifetime (before the open)."""
    # Only the api-server issues and renews execution tokens: its lifetime setting is the one that counts.
    facts["restarted_at"] = _now(day).isoformat()
    pid = day.stack.restart("api-server", env={"AIRFLOW__EXECUTION_API__JWT_EXPIRATION_TIME": str(TOKEN_LIFETIME)})
    _wait("the api-server", lambda: _api_up(day), timeout=120)
    facts["api_server_pid"] = pid
    # what Airflow itself reads in the environment the api-server was started with
    got = day.stack.airflow("config", "get-value", "execution_api", "jwt_expiration_time", check=False)
    facts["api_server_token_lifetime"] = got.stdout.strip().splitlines()[-1] if got.stdout.strip() else None


def scheduler_restart_drill(start: str, at: str) -> Drill:
    return Drill(name="scheduler_restart", start=start, breaks_airflow=True, inject=scheduler_restart(at),
                 about=f"the scheduler and the task processes under it (LocalExecutor) are SIGKILLed at {at} and "
                       "the scheduler started again 2 market minutes later")


def triggerer_restart_drill(start: str, at: str) -> Drill:
    return Drill(name="triggerer_restart", start=start, breaks_airflow=True, inject=triggerer_restart(at),
                 about=f"the triggerer is SIGKILLed at {at} while midday_optimize and eod_liquidate are deferred "
                       "and started again 20 market minutes later; both still act at their market times")


def stack_restart_drill(start: str, at: str) -> Drill:
    return Drill(name="stack_restart", start=start, breaks_airflow=True, inject=stack_restart(at),
                 about=f"every Airflow process is SIGKILLed at {at} (a power cut) and the stack started again "
                       "20 market minutes later: reconcile, refill, resume, flat at the close")


def api_server_outage_drill(start: str, at: str, down_seconds: float, speed: float) -> Drill:
    return Drill(name="api_server_outage", start=start, speed=speed, breaks_airflow=True,
                 inject=api_server_outage(at, down_seconds),
                 about=f"the api-server is down for {down_seconds:g} wall seconds from {at} while live_trading "
                       "runs; trading continues or resumes, never two traders at once")


PLATFORM_DRILLS = (
    scheduler_restart_drill("10:45", "11:00"),
    triggerer_restart_drill("11:15", "11:30"),
    api_server_outage_drill("10:40", "10:50", API_DOWN_SECONDS, speed=60.0),
    stack_restart_drill("10:45", "11:00"),
    Drill(name="token_expiry", start="09:10", breaks_airflow=True, inject=short_tokens,
          about=f"the whole day with a {TOKEN_LIFETIME} s execution-token lifetime: one trading attempt "
                "outlives many tokens"),
)

# The test suite's runs of the same faults, in the afternoon, so that the day after each fault is short and
# `make test` stays under 45 minutes on 2 cores; the recovery they test is the same. `openbell drill` and
# `make bench` run the ones above. The api-server is down for 30 wall seconds, an hour at 120x, across the
# 14:30 optimization. The triggerer dies right after both waits deferred: restarted as late as 14:08 (under
# the suite's load), the 14:30 step acted at 14:37, since Airflow's wall-clock start-up of the trigger and
# then the task, 4 s each, is 8 market minutes apiece at 120x; restarted by about 13:40 it acts on time.
SUITE_PLATFORM_DRILLS = {d.name: d for d in (
    scheduler_restart_drill("13:30", "13:40"),
    triggerer_restart_drill("13:00", "13:15"),
    api_server_outage_drill("13:00", "13:15", 30.0, speed=120.0),
    stack_restart_drill("13:00", "13:15"),
)}
