"""``openbell demo``: one simulated trading day through Airflow, from the bell to the report.

Starts Postgres (embedded unless URLs are given), Airflow's four processes and the simulator, lets the
scheduler create the session's run from the NYSE timetable, shows each task's state and the market
clock while it runs, and ends with the session's report. Exits non-zero unless every step succeeded
(or skipped itself with a reason) and the account is flat at the close. Interrupted at any moment
(Ctrl-C, SIGTERM, SIGHUP), it stops every process it started before it exits.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import logging
import re
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from sqlalchemy import Engine

from openbell import calendar
from openbell.params import RUN_DEFAULTS_ENV
from openbell.paths import home_dir
from openbell.pg.databases import drop_database, ensure_database
from openbell.pg.server import EmbeddedPostgres
from openbell.report import build_report, render
from openbell.runtime.airflow import TERMINAL, AirflowStack
from openbell.sim.testing import SimProcess
from openbell.store.db import make_engine, upgrade

log = logging.getLogger(__name__)

DEMO_KEY = "openbell-demo-key"
DEMO_SECRET = "openbell-demo-secret"
STACK_GRACE = 15.0  # seconds Airflow's processes (and the trading task's clean stop) get before SIGKILL


@dataclass
class DayResult:
    """The outcome of a rehearsed day."""

    run_id: str
    run_state: str
    task_states: dict[str, str]
    report: dict[str, Any]

    @property
    def ok(self) -> bool:
        steps_ok = all(s["status"] in ("success", "skipped") for s in self.report["steps"])
        return self.run_state == "success" and steps_ok and self.report["flat_at_close"]


@dataclass
class Rehearsal:
    """What a rehearsal's hooks can reach while the day runs."""

    stack: AirflowStack
    sim: SimProcess
    server: EmbeddedPostgres  # the server holding openbell's state database
    state_url: str = field(repr=False)
    run_id: str = ""

    @functools.cached_property
    def engine(self) -> Engine:
        """One engine on the state database for everything the hooks and the report read."""
        return make_engine(self.state_url)


def latest_session() -> date:
    """The latest completed NYSE session."""
    return calendar.last_completed_session(datetime.now(UTC)).date


def fresh_databases(home: Path, tag: str, *, separate: bool = False) -> tuple[str, str, list[EmbeddedPostgres]]:
    """Empty databases for openbell's state and Airflow's metadata, by default on one embedded server.

    With ``separate`` the state database gets a server of its own (``home/pg-state``), so it can be
    restarted without touching Airflow. Returns the state URL, the Airflow URL and the servers, state's first.
    """
    servers = [EmbeddedPostgres(home / "pg-state")] if separate else []
    servers.append(EmbeddedPostgres(home / "pg"))
    try:
        for server in servers:
            server.start()
        urls = []
        for name, server in ((f"openbell_{tag}", servers[0]), (f"airflow_{tag}", servers[-1])):
            drop_database(server.url(), name)
            urls.append(ensure_database(server.url(), name))
    except BaseException:
        _stop_all([server.stop for server in reversed(servers)])
        raise
    return urls[0], urls[1], servers


def rehearse(
    session_date: date,
    *,
    speed: float,
    start: str = "09:25",
    sim_args: Sequence[str] = (),
    home: Path | None = None,
    separate_state_server: bool = False,
    keep_running: bool = False,
    timeout: float = 1800,
    progress: Callable[[str], None] = print,
    on_running: Callable[[Rehearsal], None] | None = None,
    on_finished: Callable[[Rehearsal], None] | None = None,
    run_defaults: str = "",
) -> DayResult:
    """Run ``session_date`` through Airflow against a fresh simulator and fresh databases.

    The simulator starts at ``start`` (market time, ET). With ``separate_state_server`` openbell's
    state lives on a Postgres server of its own (tests restart it). ``on_running`` is called once the run
    exists (tests inject faults there), ``on_finished`` after it ended, while the simulator still
    answers (tests ask the broker there). ``run_defaults`` (JSON) are the deployment's run parameters
    (:data:`openbell.params.RUN_DEFAULTS_ENV`) of the scheduled run.
    """
    home = home or home_dir()
    tag = session_date.strftime("%Y%m%d")
    progress(f"starting Postgres under {home / 'pg'}")
    state_url, airflow_url, servers = fresh_databases(home, tag, separate=separate_state_server)
    sim: SimProcess | None = None
    stack: AirflowStack | None = None
    day: Rehearsal | None = None
    try:
        upgrade(state_url)
        sim_dir = home / "sim" / tag
        shutil.rmtree(sim_dir, ignore_errors=True)
        sim = SimProcess(date=session_date.isoformat(), speed=speed, start=start, data_dir=sim_dir,
                         key=DEMO_KEY, secret=DEMO_SECRET, extra_args=list(sim_args))
        stack = AirflowStack(home / "airflow", airflow_url, state_url, sim.config(), paused=True,
                             extra_env={"OPENBELL_DAG_END_DATE": session_date.isoformat(),
                                        **({RUN_DEFAULTS_ENV: run_defaults} if run_defaults else {})})
        progress("migrating Airflow's metadata database and starting scheduler, dag-processor, triggerer, api-server")
        stack.migrate()
        stack.start()
        day = Rehearsal(stack, sim, servers[0], state_url)
        stack.wait_ready()
        progress(f"Airflow is up at {stack.api_url} (user admin, password in {stack.home / 'passwords.json'})")
        sim.start()
        stack.unpause()  # only now: no task may start before the simulated market exists
        progress(f"simulator for {session_date} at {sim.base_url}, {speed:g}x market speed, from {start} ET")
        run_id = day.run_id = _wait_for_run(stack, session_date, timeout=120)
        progress(f"run {run_id} created by the NYSE timetable")
        if on_running:
            on_running(day)
        state, tasks = _follow(stack, sim, run_id, timeout, progress)
        if on_finished:
            on_finished(day)
        report = build_report(day.engine, session_date)
        result = DayResult(run_id, state, tasks, report)
        if keep_running:
            progress(f"\nAirflow UI: {stack.api_url}  login: admin / {stack.admin_password}  (Ctrl-C to stop)")
            _block()
        return result
    finally:
        stops: list[Callable[[], None]] = []
        if day is not None and "engine" in day.__dict__:
            stops.append(day.engine.dispose)
        if stack is not None:  # first: the trading task stops while Postgres still takes its last writes
            stops.append(functools.partial(stack.stop, grace=STACK_GRACE))
        if sim is not None:
            stops.append(sim.stop)
        stops += [server.stop for server in servers]
        _stop_all(stops)


def _stop_all(stops: Sequence[Callable[[], None]]) -> None:
    """Run every stop in order, each even if another failed, with Ctrl-C and SIGTERM held off meanwhile:
    a second interrupt must not cut the cleanup short and leave processes behind."""
    with _uninterrupted():
        for stop in stops:
            try:
                stop()
            except Exception as exc:
                log.warning("stopping %s failed: %s", getattr(stop, "__qualname__", stop), exc)


@contextlib.contextmanager
def _uninterrupted() -> Iterator[None]:
    """Ignore SIGINT, SIGTERM and SIGHUP meanwhile (only the main thread can)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in _STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    """SIGTERM and SIGHUP take Ctrl-C's way out: the same cleanup."""
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _wait_for_run(stack: AirflowStack, session_date: date, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    s = calendar.session(session_date)
    assert s is not None
    while time.monotonic() < deadline:
        stack.check_alive()
        for run in stack.dag_runs():
            if run.get("data_interval_start") and datetime.fromisoformat(run["data_interval_start"]) == s.open:
                return str(run["dag_run_id"])
        time.sleep(1)
    raise TimeoutError(f"the scheduler created no run for {session_date} within {timeout:.0f}s")


def _follow(
    stack: AirflowStack, sim: SimProcess, run_id: str, timeout: float, progress: Callable[[str], None]
) -> tuple[str, dict[str, str]]:
    """Print task state changes with the market time until the run ends."""
    seen: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    state = "running"
    while time.monotonic() < deadline:
        stack.check_alive()
        tasks = {ti["task_id"]: str(ti.get("state") or "none") for ti in stack.task_instances(run_id)}
        changed = {k: v for k, v in tasks.items() if seen.get(k) != v}
        if changed:
            try:
                market = datetime.fromisoformat(sim.clock()["market_time"]).astimezone(calendar.ET)
                stamp = market.strftime("%H:%M ET")
            except Exception:
                stamp = "--:-- ET"
            for task_id, st in sorted(changed.items()):
                progress(f"  [{stamp}] {task_id:<18} {st}")
            seen.update(changed)
        state = str(stack.dag_run(run_id).get("state"))
        if state in ("success", "failed") and all(v in TERMINAL for v in tasks.values()):
            return state, tasks
        time.sleep(1)
    raise TimeoutError(f"run {run_id} did not finish within {timeout:.0f}s (tasks: {seen})")


def _block() -> None:
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass


EARLIEST_START = "04:00"  # the simulator's day starts no earlier than Alpaca's pre-market


def start_error(session_date: date, start: str) -> str | None:
    """Why ``start`` (``HH:MM``, ET) cannot start a rehearsal of ``session_date``, or None: a malformed time,
    one before :data:`EARLIEST_START`, or one at or after the session's close (13:00 on a half day)."""
    from openbell.sim.playback import market_instant

    s = calendar.session(session_date)
    if s is None:
        return f"{session_date} is not an NYSE session"
    if not re.fullmatch(r"\d{2}:\d{2}", start):
        return f"--start must be a time as HH:MM (ET), got {start!r}"
    try:
        at = market_instant(session_date, start)
    except ValueError as exc:
        return f"--start {start!r}: {exc}"
    close = s.close.astimezone(calendar.ET)
    if at >= close:
        return f"--start {start} is at or after the close of {session_date} ({close:%H:%M} ET): nothing to trade"
    if at < market_instant(session_date, EARLIEST_START):
        return f"--start {start} is before {EARLIEST_START} ET, when the simulated day begins"
    return None


def main(argv: list[str] | None = None) -> int:
    """``openbell demo [--date D] [--start HH:MM] [--speed S] [--sim-option ARG]... [--keep-running]``."""
    parser = argparse.ArgumentParser(prog="openbell demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--date", type=date.fromisoformat, help="session to simulate (default: the latest completed)")
    parser.add_argument("--start", default="09:25", metavar="HH:MM",
                        help="market time (ET) the simulator starts at, before the close (default 09:25)")
    parser.add_argument("--speed", type=float, default=120.0, help="market seconds per wall second (default 120)")
    parser.add_argument("--sim-option", action="append", default=[], metavar="ARG",
                        help="pass an argument to the simulator, e.g. --sim-option=--seed-position=AAPL:10")
    parser.add_argument("--keep-running", action="store_true", help="leave Airflow's UI up after the day")
    parser.add_argument("--json", action="store_true", help="print the final report as JSON")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    session_date = args.date or latest_session()
    if calendar.session(session_date) is None:
        parser.error(f"{session_date} is not an NYSE session")
    refused = start_error(session_date, args.start)
    if refused:
        print(f"openbell demo: {refused}", file=sys.stderr)
        return 2
    for sig in _STOP_SIGNALS[1:]:
        signal.signal(sig, _interrupt)
    try:
        result = rehearse(session_date, speed=args.speed, start=args.start, sim_args=args.sim_option,
                          keep_running=args.keep_running)
    except KeyboardInterrupt:
        print("\ninterrupted; every process the demo started is stopped", file=sys.stderr)
        return 130
    print()
    if args.json:
        import json

        from openbell.jsonutil import json_default

        print(json.dumps(result.report, default=json_default, indent=2))
    else:
        print(render(result.report))
    print(f"\nrun {result.run_id}: {result.run_state}; " + ("OK" if result.ok else "NOT OK"))
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
