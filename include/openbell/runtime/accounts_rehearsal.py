"""Several accounts' trading days at once on one Airflow, against one simulator serving every account.

Each account has a key of its own on the simulator (its own request budget and stream limit), an Airflow
connection ``alpaca_<name>`` in the environment, and an entry in an accounts file (``OPENBELL_ACCOUNTS``), so the
DAG files generate its ``trading_day_<name>`` and ``trading_control_<name>``; its state lives in its own schema of
one state database. The scheduler creates every account's run from the NYSE timetable, and they run side by side
on the stack's executor (LocalExecutor, or CeleryExecutor with a local Redis and two workers).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping, Sequence
from datetime import date
from pathlib import Path
from typing import Any

import yaml

from openbell.accounts import ACCOUNTS_ENV, day_dag_id
from openbell.adapters.alpaca.config import AlpacaConfig
from openbell.pg.server import EmbeddedPostgres
from openbell.report import build_report
from openbell.runtime.airflow import (
    AirflowStack,
    alpaca_connection,
    free_port,
)
from openbell.runtime.rehearsal import (
    DayResult,
    Executor,
    Rehearsal,
    _follow,
    _wait_for_run,
    labelled,
    start_stack,
    stop_all,
)
from openbell.sim.testing import SimProcess
from openbell.store.db import upgrade
from openbell.store.scope import scoped_url


def conn_id(name: str) -> str:
    """The Airflow connection of account ``name`` in a rehearsal."""
    return f"alpaca_{name}"


def write_accounts_file(path: Path, accounts: Mapping[str, Mapping[str, Any]]) -> Path:
    """The accounts file of ``accounts`` (name -> the account's other keys: strategy, universe, ceilings), its
    directory made if need be."""
    entries = [{"name": name, "conn_id": conn_id(name), **dict(extra)} for name, extra in accounts.items()]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"accounts": entries}, sort_keys=False))
    return path


def rehearse_accounts(
    session_date: date,
    accounts: Mapping[str, Mapping[str, Any]] | Sequence[str],
    *,
    home: Path,
    speed: float = 120.0,
    start: str = "09:25",
    executor: Executor = "local",
    sim_args: Sequence[str] = (),
    run_defaults: str = "",
    trading_workers: int = 1,
    timeout: float = 1800,
    progress: Callable[[str], None] = print,
    on_running: Callable[[dict[str, Rehearsal]], None] | None = None,
    on_finished: Callable[[dict[str, Rehearsal]], None] | None = None,
    keep_running: Callable[[dict[str, Rehearsal]], None] | None = None,
) -> dict[str, DayResult]:
    """Rehearse ``session_date`` for every account at once (``accounts``: names, or name -> its accounts-file
    keys) on fresh databases under ``home``; returns each account's result, in the order given. ``sim_args`` are
    the simulator's options, ``run_defaults`` (JSON) the deployment's run parameters under every account's own;
    on CeleryExecutor ``trading_workers`` workers take the trading queue and one the default queue.

    ``on_running`` is called with each account's :class:`Rehearsal` once every run exists, ``on_finished`` once
    every run ended, while the simulator still answers; ``keep_running`` before anything stops (the demo waits
    there for Ctrl-C)."""
    settings = {name: {} for name in accounts} if not isinstance(accounts, Mapping) else dict(accounts)
    if not settings:
        raise ValueError("no account to rehearse")
    names = list(settings)
    tag = session_date.strftime("%Y%m%d")
    stops: list[Callable[[], None]] = []
    days: dict[str, Rehearsal] = {}
    try:
        sim = SimProcess(date=session_date.isoformat(), speed=speed, start=start, data_dir=home / "sim" / tag,
                         accounts=names, port=free_port(), extra_args=list(sim_args))
        progress(f"{len(names)} accounts: {', '.join(names)}")
        stack, state_url, servers = start_accounts_stack(
            session_date, settings, {n: sim.config(n) for n in names}, home=home, stops=stops,
            executor=executor, trading_workers=trading_workers, run_defaults=run_defaults, progress=progress)
        shutil.rmtree(sim.data_dir, ignore_errors=True)
        stops.insert(1, sim.stop)  # after Airflow's processes: tasks stop before the market does
        sim.start()
        days = {n: Rehearsal(stack.for_dag(day_dag_id(n)), sim, servers[0], scoped_url(state_url, n))
                for n in names}
        for day in days.values():
            day.stack.unpause()
        progress(f"simulator for {session_date} at {sim.base_url}, {speed:g}x market speed, from {start} ET")
        for name, day in days.items():
            day.run_id = _wait_for_run(day.stack, session_date, timeout=120)
            progress(f"{name}: run {day.run_id} created by the NYSE timetable")
        if on_running:
            on_running(days)
        ends = {n: _follow(d.stack, sim, d.run_id, timeout, labelled(progress, n))
                for n, d in days.items()}
        if on_finished:
            on_finished(days)
        results = {n: DayResult(d.run_id, *ends[n], build_report(d.engine, session_date)) for n, d in days.items()}
        if keep_running:
            keep_running(days)
        return results
    finally:
        stop_all([*(d.engine.dispose for d in days.values() if "engine" in d.__dict__), *stops])


def start_accounts_stack(
    session_date: date,
    settings: Mapping[str, Mapping[str, Any]],
    connections: Mapping[str, AlpacaConfig],
    *,
    home: Path,
    stops: list[Callable[[], None]],
    **kw: Any,
) -> tuple[AirflowStack, str, list[EmbeddedPostgres]]:
    """:func:`~openbell.runtime.rehearsal.start_stack` (``kw``: its options) for the accounts of ``settings``
    (name -> its accounts-file keys), account NAME's connection ``alpaca_<name>`` made of ``connections[NAME]`` in
    the environment; the state database upgraded."""
    env = {ACCOUNTS_ENV: str(write_accounts_file(home / "accounts.yaml", settings)),
           **{f"AIRFLOW_CONN_{conn_id(n).upper()}": alpaca_connection(connections[n]) for n in settings}}
    stack, state_url, servers = start_stack(session_date, home=home, stops=stops, extra_env=env,
                                            dag_id=day_dag_id(next(iter(settings))), **kw)
    upgrade(state_url)
    return stack, state_url, servers
