"""Fault drills: a simulated session through Airflow with one fault injected, then the day's invariants.

Every drill ends with the checks a trader would make the morning after: the run and every step
succeeded, the account is flat and the position book agrees, no ``client_order_id`` was submitted
twice, every broker order is in Postgres, and every session minute is in the bars table for every
symbol. ``openbell drill NAME`` runs one; the end-to-end tests and ``make bench`` run them all."""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text

from openbell import calendar
from openbell.broker import book
from openbell.params import DEFAULT_UNIVERSE
from openbell.pg import reachable_tempdir
from openbell.runtime.demo import DayResult, Rehearsal, rehearse
from openbell.store.ledger import steps_for

log = logging.getLogger(__name__)

DAY = date(2025, 11, 20)
EVERY_STEP = ("wait_for_open", "download", "todays_bars", "reconcile", "live_trading", "midday_optimize",
              "eod_liquidate")
Inject = Callable[[Rehearsal, dict[str, Any]], None]


@dataclass(frozen=True)
class Drill:
    """One fault scenario: where the simulated day starts, how fast it runs, what goes wrong."""

    name: str
    about: str
    start: str = "14:15"
    speed: float = 120.0
    sim_args: tuple[str, ...] = ()
    inject: Inject | None = None
    separate_state_server: bool = False


@dataclass
class DrillResult:
    """A drill's outcome: the broken invariants (none when it passed) and what was observed."""

    drill: str
    violations: list[str]
    facts: dict[str, Any] = field(default_factory=dict)
    day: DayResult | None = None

    @property
    def passed(self) -> bool:
        return not self.violations


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


def running_attempt(day: Rehearsal, step: str) -> dict[str, Any] | None:
    """The ledger row of ``step``'s attempt that is running now, if any."""
    rows = [r for r in steps_for(day.engine, DAY) if r["step"] == step and r["status"] == "running"]
    return rows[-1] if rows else None


def _phase(day: Rehearsal) -> str | None:
    with day.engine.connect() as conn:
        return conn.execute(text("SELECT phase FROM trading_sessions WHERE session_date = :d"), {"d": DAY}).scalar()


def _market_at(day: Rehearsal, hhmm: str) -> bool:
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


def _task_state(day: Rehearsal, task_id: str) -> str:
    return str(day.stack.task_instance(day.run_id, task_id).get("state") or "none")


# -- the faults -----------------------------------------------------------------------------------


def _kill_trading(day: Rehearsal, facts: dict[str, Any], *, clear: bool = False) -> None:
    wait_for("live trading at 15:05", lambda: _market_at(day, "15:05") and running_attempt(day, "live_trading"))
    killed = kill_attempt(day, "live_trading", facts)
    if clear:
        state = wait_for("Airflow to see the attempt fail",
                         lambda: (s := _task_state(day, "live_trading")) in ("up_for_retry", "failed") and s)
        facts["state_before_clear"] = state
        facts["cleared"] = day.stack.clear_task(day.run_id, "live_trading")
    retry = wait_for("the next live_trading attempt", lambda: (r := running_attempt(day, "live_trading"))
                     and r["id"] != killed["id"] and r, timeout=120)
    facts["retry_started"] = retry["started"].isoformat()


def _kill_liquidation(day: Rehearsal, facts: dict[str, Any]) -> None:
    wait_for("the liquidation to start", lambda: _phase(day) == "liquidating" and running_attempt(day, "eod_liquidate"),
             timeout=600, poll=0.02)
    kill_attempt(day, "eod_liquidate", facts)


def _refuse_one_reconnect(day: Rehearsal, facts: dict[str, Any]) -> None:
    # Three drops come from the command line; only the second one's reconnects are refused (406) for 30 s.
    wait_for("14:50", lambda: _market_at(day, "14:50"), timeout=600, poll=0.25)
    day.sim.set_faults(refuse_reconnect_seconds=30)
    wait_for("15:10", lambda: _market_at(day, "15:10"), timeout=600, poll=0.25)
    day.sim.set_faults(refuse_reconnect_seconds=0)


def _restart_postgres(day: Rehearsal, facts: dict[str, Any]) -> None:
    wait_for("live trading at 15:05", lambda: _market_at(day, "15:05") and running_attempt(day, "live_trading"),
             timeout=600, poll=0.25)
    facts["postgres_stopped_at"] = market_now(day).isoformat()
    day.server.stop()
    time.sleep(3)
    day.server.start()
    facts["postgres_started_at"] = market_now(day).isoformat()


DRILLS: dict[str, Drill] = {d.name: d for d in (
    Drill("kill_trading_retry", "the trading task's process is SIGKILLed at 15:05; Airflow retries it",
          inject=_kill_trading),
    Drill("kill_trading_clear", "the trading task's process is SIGKILLed at 15:05; a user clears the task",
          inject=lambda day, facts: _kill_trading(day, facts, clear=True)),
    Drill("stream_drops", "the streams drop at 14:40, 15:00 and 15:40; the second drop's reconnects get 406 for 30 s",
          start="14:00", speed=60.0,
          sim_args=("--drop-streams-at", "14:40", "--drop-streams-at", "15:00", "--drop-streams-at", "15:40"),
          inject=_refuse_one_reconnect),
    Drill("stream_silence", "the data stream stays connected but sends nothing from 15:05 for 5 minutes",
          sim_args=("--silence-at", "15:05:5")),
    Drill("rest_errors", "30% of REST calls are answered 429 or 500 all day", sim_args=("--rest-error-rate", "0.3")),
    Drill("postgres_restart", "openbell's Postgres restarts at 15:05 (down about 3 s wall)",
          inject=_restart_postgres, separate_state_server=True),
    Drill("kill_liquidation", "eod_liquidate's process is SIGKILLed mid-way; Airflow reruns it",
          start="15:50", speed=10.0, inject=_kill_liquidation),
)}


# -- the checks -----------------------------------------------------------------------------------


def _broker_view(day: Rehearsal) -> dict[str, Any]:
    from openbell.adapters.alpaca.broker import AlpacaBroker

    broker = AlpacaBroker(day.sim.config())
    orders = broker.orders("all")
    positions = broker.positions()
    health = day.sim.health()
    return {
        "client_order_ids": [o.client_order_id for o in orders],
        "positions": {p.symbol: p.qty for p in positions},
        "duplicate_submissions": int(health["broker"]["duplicate_client_order_ids"]),
        "faults": day.sim.faults()["counters"],
    }


def missing_minutes(engine: Engine, session_date: date, symbols: tuple[str, ...]) -> dict[str, int]:
    """Per symbol, how many of the session's minutes have no bar in Postgres (symbols missing none left out)."""
    s = calendar.session(session_date)
    assert s is not None
    with engine.connect() as conn:
        have = dict(conn.execute(
            text("SELECT symbol, count(DISTINCT ts) FROM bars WHERE symbol = ANY(:syms) AND ts >= :a AND ts < :b "
                 "GROUP BY symbol"),
            {"syms": list(symbols), "a": s.open, "b": s.close},
        ).all())
    expected = len(s.minutes())
    return {sym: expected - int(have.get(sym, 0)) for sym in symbols if int(have.get(sym, 0)) != expected}


def _ledger_facts(engine: Engine) -> dict[str, Any]:
    """Per step, each attempt's status, error and the counts it recovered."""
    keep = ("reconnects", "stream_restarts", "refills", "refilled_bars", "first_seq", "decisions", "orders",
            "abandoned_attempts", "writer", "first_live_decision_at")
    out: dict[str, Any] = {}
    for row in steps_for(engine, DAY):
        summary = row["summary"] or {}
        out.setdefault(row["step"], []).append(
            {"attempt": row["attempt"], "status": row["status"], "error": (row["error"] or "")[:300],
             **{k: summary[k] for k in keep if k in summary}}
        )
    return out


def check_day(result: DayResult, seen: dict[str, Any]) -> list[str]:
    """The invariants every drill must keep; each broken one is a sentence."""
    report = result.report
    bad: list[str] = []
    if result.run_state != "success":
        bad.append(f"the run ended {result.run_state}: {result.task_states}")
    steps = {s["step"]: s for s in report["steps"]}
    for name in EVERY_STEP:
        status = steps.get(name, {}).get("status")
        if status != "success":
            bad.append(f"step {name} ended {status}")
    if seen["positions"] or not report["flat_at_close"]:
        bad.append(f"not flat at the close: broker positions {seen['positions']}, "
                   f"report flat_at_close={report['flat_at_close']}")
    if seen["book"] != seen["positions"]:
        bad.append(f"the position book {seen['book']} disagrees with the broker {seen['positions']}")
    twice = {c: n for c, n in Counter(seen["client_order_ids"]).items() if n > 1}
    if twice or seen["duplicate_submissions"]:
        bad.append(f"client_order_id submitted twice: {twice or seen['duplicate_submissions']}")
    unsettled = sorted(f"{o['client_order_id']} ({o['status']})" for o in report["orders"]
                       if o["status"] not in book.FINAL_STATUSES)
    if unsettled:
        bad.append(f"orders not final at the end of the day: {unsettled}")
    missing = set(seen["client_order_ids"]) - {o["client_order_id"] for o in report["orders"]}
    if missing:
        bad.append(f"broker orders missing from Postgres: {sorted(missing)}")
    if seen["holes"]:
        bad.append(f"session minutes missing from the bars table: {seen['holes']}")
    return bad


def run_drill(drill: Drill, home: Path, *, progress: Callable[[str], None] = log.info) -> DrillResult:
    """Run one drill in ``home`` (a scratch directory) and check the day."""
    facts: dict[str, Any] = {"about": drill.about}
    seen: dict[str, Any] = {}

    def on_running(day: Rehearsal) -> None:
        if drill.inject is not None:
            drill.inject(day, facts)

    def on_finished(day: Rehearsal) -> None:  # the simulator and Postgres still answer here
        seen.update(_broker_view(day))
        seen["holes"] = missing_minutes(day.engine, DAY, DEFAULT_UNIVERSE)
        with day.engine.connect() as conn:
            seen["book"] = {s: q for s, (q, _) in book.book_positions(conn, DAY).items() if q != 0}
        facts["ledger"] = _ledger_facts(day.engine)
        facts["trading_tries"] = [
            {k: t.get(k) for k in ("try_number", "state", "start_date", "end_date")}
            for t in day.stack.task_tries(day.run_id, "live_trading")
        ]

    started = time.monotonic()
    try:
        day = rehearse(DAY, speed=drill.speed, start=drill.start, sim_args=drill.sim_args, home=home,
                       separate_state_server=drill.separate_state_server, progress=progress,
                       on_running=on_running, on_finished=on_finished)
    except Exception as exc:
        return DrillResult(drill.name, [f"the drill could not run: {type(exc).__name__}: {exc}"], facts)
    facts["wall_seconds"] = round(time.monotonic() - started, 1)
    facts["faults"] = seen["faults"]
    return DrillResult(drill.name, check_day(day, seen), facts, day)


def run_in_scratch(name: str, parent: Path, **kw: Any) -> DrillResult:
    """Run the drill ``name`` in a fresh scratch home under ``parent``, removed afterwards."""
    home = reachable_tempdir(parent, "openbell-drill-")
    try:
        return run_drill(DRILLS[name], home, **kw)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    """``openbell drill [NAME ...]``: run fault drills against the simulator; exits 1 if any failed."""
    import json

    parser = argparse.ArgumentParser(prog="openbell drill", description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"drills to run (default: all): {', '.join(DRILLS)}")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in DRILLS]
    if unknown:
        parser.error(f"unknown drill(s) {', '.join(unknown)}; choose from {', '.join(DRILLS)}")
    logging.basicConfig(level=logging.WARNING)
    failed = 0
    for name in args.names or list(DRILLS):
        print(f"drill {name}: {DRILLS[name].about}", flush=True)
        result = run_in_scratch(name, Path(tempfile.gettempdir()), progress=lambda line: print(line, flush=True))
        failed += not result.passed
        print(json.dumps(result.facts, indent=2, default=str))
        print(f"drill {name}: " + ("PASSED" if result.passed else "FAILED\n  " + "\n  ".join(result.violations)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
