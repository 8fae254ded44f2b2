"""A simulated day through Airflow: Postgres, Airflow's four processes and the simulator, the session's
run from the NYSE timetable, followed until it ends.

A :class:`Stage` owns the long-lived parts (the Postgres server, Airflow's metadata database and
processes) and rehearses a day on them against a fresh simulator. :func:`rehearse` is one day on a stage of
its own (``openbell demo``, ``openbell drill``); :mod:`openbell.runtime.drill_stage` runs several drills at once on
one stage, each as an account of its own.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any, Literal, Self

from sqlalchemy import Engine

from openbell import calendar
from openbell.accounts import DAY_DAG, account_of_dag, control_dag_id
from openbell.adapters.alpaca.config import AlpacaConfig
from openbell.params import RUN_DEFAULTS_ENV
from openbell.pg.databases import drop_database, ensure_database
from openbell.pg.server import EmbeddedPostgres
from openbell.report import build_report
from openbell.runtime.airflow import DEFAULT_QUEUE, TERMINAL, TRADING_QUEUE, AirflowStack, CeleryWorkers, free_port
from openbell.runtime.redis_server import LocalRedis
from openbell.sim.testing import SimProcess
from openbell.store.db import make_engine, upgrade

log = logging.getLogger(__name__)

DEMO_KEY = "openbell-demo-key"
DEMO_SECRET = "openbell-demo-secret"
STACK_GRACE = 15.0  # seconds Airflow's processes (and the trading task's clean stop) get before SIGKILL
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
Executor = Literal["local", "celery"]


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

    @property
    def control_dag(self) -> str:
        """The ``trading_control`` DAG of the day's account (``trading_control_<name>`` of ``trading_day_<name>``)."""
        return control_dag_id(account_of_dag(self.stack.dag_id))

    @functools.cached_property
    def engine(self) -> Engine:
        """One engine on the state database for everything the hooks and the report read."""
        return make_engine(self.state_url)


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
        stop_all([server.stop for server in reversed(servers)])
        raise
    return urls[0], urls[1], servers


class Staged:
    """A context manager over processes that :meth:`_start` starts, recording in :attr:`_stops` what stops them, in
    the order to run it: :meth:`close` runs them on exit, and when the start fails."""

    _stops: list[Callable[[], None]]

    def _start(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop what was started: Airflow first (the trading task stops while Postgres still takes its last
        writes), then Redis, then Postgres."""
        stops, self._stops = self._stops, []
        stop_all(stops)


def start_stack(
    session_date: date,
    *,
    home: Path,
    stops: list[Callable[[], None]],
    alpaca: AlpacaConfig | None = None,
    extra_env: Mapping[str, str] | None = None,
    dag_id: str = DAY_DAG,
    executor: Executor = "local",
    trading_workers: int = 1,
    run_defaults: str = "",
    separate_state_server: bool = False,
    progress: Callable[[str], None] = print,
) -> tuple[AirflowStack, str, list[EmbeddedPostgres]]:
    """Fresh databases under ``home`` and Airflow's processes for the days of ``session_date``, its DAGs paused
    (ready once ``dag_id`` is loaded): the alpaca connection ``alpaca`` in the environment (None: none), with
    ``extra_env`` and the deployment's ``run_defaults``; on CeleryExecutor a local Redis and ``trading_workers``
    workers for the trading queue and one for the default queue. Returns the stack, the state database's URL and
    the servers (the state's first, on a server of its own with ``separate_state_server``); ``stops`` gets, at its
    front, what stops them, in the order to run it."""
    progress(f"starting Postgres under {home / 'pg'}")
    state_url, airflow_url, servers = fresh_databases(home, session_date.strftime("%Y%m%d"),
                                                      separate=separate_state_server)
    stops[:0] = [server.stop for server in reversed(servers)]
    env = {"OPENBELL_DAG_END_DATE": session_date.isoformat(),
           **({RUN_DEFAULTS_ENV: run_defaults} if run_defaults else {}), **(extra_env or {})}
    celery = None
    if executor == "celery":
        redis = LocalRedis(home / "redis")
        stops.insert(0, redis.stop)  # after Airflow's processes: the workers talk to it until they stop
        redis.start()
        celery = CeleryWorkers(redis.url, queues=(TRADING_QUEUE,) * trading_workers + (DEFAULT_QUEUE,))
        progress(f"Redis for Celery on 127.0.0.1:{redis.port}; workers for queues {celery.queues}")
    stack = AirflowStack(home / "airflow", airflow_url, state_url, alpaca, paused=True, extra_env=env, celery=celery)
    stack.dag_id = dag_id
    progress("migrating Airflow's metadata database and starting " + ", ".join(stack.process_names))
    stack.migrate()
    stops.insert(0, functools.partial(stack.stop, grace=STACK_GRACE))
    stack.start()
    stack.wait_ready()
    progress(f"Airflow is up at {stack.api_url} (user admin, password in {stack.home / 'passwords.json'})")
    return stack, state_url, servers


class Stage(Staged):
    """Postgres and Airflow for rehearsing a day of ``session_date`` (a context manager).

    The deployment's run parameters (``run_defaults``, JSON), state server (``separate_state_server``) and
    executor (``executor``: "celery" adds a local Redis and Celery workers) are the stage's, as they are a
    deployment's, and so is the alpaca connection, in the environment, for a simulator with ``sim_args`` (its
    rate limit). The day brings its own simulator (its options, speed and start)."""

    def __init__(self, session_date: date, home: Path, *, separate_state_server: bool = False, run_defaults: str = "",
                 sim_args: Sequence[str] = (), progress: Callable[[str], None] = print,
                 executor: Executor = "local") -> None:
        self.session_date = session_date
        self.sim_args = tuple(sim_args)  # the simulator options the alpaca connection is for (its rate limit)
        self.home = home
        self.separate_state_server = separate_state_server
        self.run_defaults = run_defaults
        self.progress = progress
        self.executor = executor
        self.sim_port = free_port()  # the day's simulator answers here: the alpaca connection's address
        self.days = 0
        self._stops: list[Callable[[], None]] = []

    def _start(self) -> None:
        self.connection = self._simulator(sim_args=self.sim_args).config()
        self.stack, self.state_url, self.servers = start_stack(
            self.session_date, home=self.home, stops=self._stops, alpaca=self.connection, executor=self.executor,
            run_defaults=self.run_defaults, separate_state_server=self.separate_state_server, progress=self.progress)

    def _simulator(self, speed: float = 120.0, start: str = "09:25", sim_args: Sequence[str] = ()) -> SimProcess:
        """The simulator of a day (not started): on the stage's port, with the demo's key."""
        return SimProcess(date=self.session_date.isoformat(), speed=speed, start=start,
                          data_dir=self.home / "sim" / self.session_date.strftime("%Y%m%d"), key=DEMO_KEY,
                          secret=DEMO_SECRET, extra_args=list(sim_args), port=self.sim_port)

    def rehearse(
        self,
        *,
        speed: float,
        start: str = "09:25",
        sim_args: Sequence[str] = (),
        timeout: float = 1800,
        on_running: Callable[[Rehearsal], None] | None = None,
        on_finished: Callable[[Rehearsal], None] | None = None,
        keep_running: Callable[[Rehearsal], None] | None = None,
    ) -> DayResult:
        """Run the session through Airflow against a fresh simulator from ``start`` (market time, ET).

        ``on_running`` is called once the run exists (tests inject faults there), ``on_finished`` after it
        ended, while the simulator still answers (tests ask the broker there); ``keep_running`` before the
        simulator stops (the demo waits there for Ctrl-C). One day per stage."""
        if self.days:
            raise RuntimeError("this stage rehearsed its day already: rehearse the next on a new stage")
        sim = self._simulator(speed, start, sim_args)
        if sim.config() != self.connection:
            raise ValueError(f"simulator options {list(sim_args)} need an alpaca connection other than the stage's "
                             "(a rate limit): rehearse this day on a stage of its own")
        self.days += 1
        ended = False
        upgrade(self.state_url)
        shutil.rmtree(sim.data_dir, ignore_errors=True)
        day = Rehearsal(self.stack, sim, self.servers[0], self.state_url)
        try:
            sim.start()
            self.stack.unpause()  # only now: no task may start before the simulated market exists
            self.progress(f"simulator for {self.session_date} at {sim.base_url}, {speed:g}x market speed, "
                          f"from {start} ET")
            run_id = day.run_id = _wait_for_run(self.stack, self.session_date, timeout=120)
            self.progress(f"run {run_id} created by the NYSE timetable")
            if on_running:
                on_running(day)
            state, tasks = _follow(self.stack, sim, run_id, timeout, self.progress)
            if on_finished:
                on_finished(day)
            result = DayResult(run_id, state, tasks, build_report(day.engine, self.session_date))
            if keep_running:
                keep_running(day)
            ended = True
            return result
        finally:
            stops: list[Callable[[], None]] = []
            if "engine" in day.__dict__:
                stops.append(day.engine.dispose)
            if not ended:  # a task may still run: Airflow stops before the simulator it talks to
                stops.append(self.close)
            stop_all([*stops, sim.stop])


def rehearse(
    session_date: date,
    *,
    speed: float,
    start: str = "09:25",
    sim_args: Sequence[str] = (),
    home: Path,
    separate_state_server: bool = False,
    keep_running: Callable[[Rehearsal], None] | None = None,
    timeout: float = 1800,
    progress: Callable[[str], None] = print,
    on_running: Callable[[Rehearsal], None] | None = None,
    on_finished: Callable[[Rehearsal], None] | None = None,
    run_defaults: str = "",
    executor: Executor = "local",
) -> DayResult:
    """Run ``session_date`` through Airflow against a fresh simulator and fresh databases, on a stage of its
    own under ``home`` (see :meth:`Stage.rehearse`). With ``separate_state_server`` openbell's state lives
    on a Postgres server of its own (tests restart it); ``run_defaults`` (JSON) are the deployment's run
    parameters (:data:`openbell.params.RUN_DEFAULTS_ENV`) of the scheduled run; ``executor`` "celery" runs the
    tasks on CeleryExecutor, with a local Redis and Celery workers."""
    with Stage(session_date, home, separate_state_server=separate_state_server, run_defaults=run_defaults,
               sim_args=sim_args, progress=progress, executor=executor) as stage:
        return stage.rehearse(speed=speed, start=start, sim_args=sim_args, timeout=timeout, on_running=on_running,
                              on_finished=on_finished, keep_running=keep_running)


def stop_all(stops: Sequence[Callable[[], None]]) -> None:
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
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _wait_for_run(stack: AirflowStack, session_date: date, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    s = calendar.session(session_date)
    assert s is not None
    while time.monotonic() < deadline:
        stack.check_alive()
        for run in stack.dag_runs():
            if run.get("data_interval_start") and datetime.fromisoformat(run["data_interval_start"]) == s.open:
                return str(run["dag_run_id"])
        time.sleep(0.5)
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


def labelled(progress: Callable[[str], None], name: str) -> Callable[[str], None]:
    """``progress`` with each line headed by ``name`` (an account's or a drill's), for :func:`_follow`."""
    return lambda line: progress(f"{name}: {line.lstrip()}")
