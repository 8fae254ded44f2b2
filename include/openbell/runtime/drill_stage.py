"""Drills side by side on one stage, and ``openbell drill``.

The drills that leave Airflow's processes alone (:attr:`~openbell.runtime.drill_kit.Drill.shares_stage`) run on
one :class:`DrillStage`: one Postgres server for openbell's state, one for Airflow's metadata, and Airflow's
processes, with an accounts file naming one account per drill. Each drill is an account of its own: its
``trading_day_<drill>`` (:attr:`~openbell.runtime.drill_kit.Drill.account`) trades its own simulator (its faults,
its market clock, a key of its own) and keeps its state, bars included, in its own schema: a drill's market is
its own (halts, splits and corrections differ), where real accounts share one market's bars.

Several drills are in flight at once, but each starts only once the one before it trades: the data steps and the
loop's start-up are the CPU-heavy part of a day, and each drill expects to trade by about 15:00 at 120x, as it
would alone. A drill that restarts the state server runs after the others, alone. Every other drill gets a stage
of its own (:func:`~openbell.runtime.drills.run_in_scratch`).
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from sqlalchemy import text

from openbell.accounts import day_dag_id
from openbell.pg.throwaway import reachable_tempdir
from openbell.report import build_report
from openbell.runtime.accounts_rehearsal import start_accounts_stack
from openbell.runtime.airflow import free_port
from openbell.runtime.drill_kit import DAY, Drill, running_attempt
from openbell.runtime.drills import DRILLS, DrillResult, DrillWatch, run_in_scratch
from openbell.runtime.rehearsal import (
    DEMO_SECRET,
    DayResult,
    Rehearsal,
    Staged,
    _follow,
    _wait_for_run,
    labelled,
    stop_all,
)
from openbell.sim.testing import SimProcess
from openbell.store.db import make_engine, upgrade
from openbell.store.scope import check_name, scoped_url

log = logging.getLogger(__name__)

TOGETHER = 4  # drills in flight at once on a stage
RUN_TIMEOUT = 1800.0  # wall seconds a drill's run may take
TRADING_TIMEOUT = 300.0  # wall seconds the next drill waits for the one before it to trade


def groups(drills: Sequence[Drill]) -> list[list[Drill]]:
    """``drills`` in the groups a stage runs one after another: every drill that leaves the state server alone,
    then each one that restarts it, alone."""
    rest = [d for d in drills if not d.separate_state_server]
    return ([rest] if rest else []) + [[d] for d in drills if d.separate_state_server]


class DrillStage(Staged):
    """One stage under ``parent`` for ``drills`` (each must :attr:`~Drill.shares_stage`), each an account of its
    own (a context manager; everything stops and the stage's home is removed on exit). :meth:`run` runs some of
    them, each once."""

    def __init__(self, drills: Sequence[Drill], parent: Path, progress: Callable[[str], None] = log.info) -> None:
        refused = [d.name for d in drills if not d.shares_stage]
        if refused:
            raise ValueError(f"drills {refused} cannot share a stage: run each on a stage of its own")
        accounts = [check_name(d.account) for d in drills]  # each trades as the account of its name
        if len(set(accounts)) < len(accounts):
            raise ValueError(f"two drills would trade as one account: {sorted(accounts)}")
        self.drills = {d.name: d for d in drills}
        self.parent, self.progress = parent, progress
        self.ports = {name: free_port() for name in self.drills}  # each drill's simulator answers on its own port
        self.done: set[str] = set()
        self.home: Path | None = None
        self._unfinished: set[str] = set()  # drills whose run may still hold a task
        self._stops: list[Callable[[], None]] = []

    @property
    def spoiled(self) -> bool:
        """Whether a drill's run did not end: its tasks may still hold the stage."""
        return bool(self._unfinished)

    def _start(self) -> None:
        self.home = reachable_tempdir(self.parent, "openbell-stage-")
        self.progress(f"a stage for the drills {', '.join(self.drills)} under {self.home}")
        connections = {d.account: self._simulator(d).config() for d in self.drills.values()}
        settings = {d.account: d.account_settings or {} for d in self.drills.values()}
        self.stack, self.state_url, self.servers = start_accounts_stack(
            DAY, settings, connections, home=self.home, stops=self._stops, separate_state_server=True,
            progress=self.progress)
        for drill in self.drills.values():
            _own_market(scoped_url(self.state_url, drill.account))

    def close(self) -> None:
        """Stop Airflow, then Postgres; remove the stage's home."""
        super().close()
        if self.home is not None:
            shutil.rmtree(self.home, ignore_errors=True)
            self.home = None

    def _simulator(self, drill: Drill) -> SimProcess:
        """The simulator of ``drill`` (not started): on its port, with a key of the drill's own."""
        assert self.home is not None
        return SimProcess(date=drill.date.isoformat(), speed=drill.speed, start=drill.start,
                          data_dir=self.home / "sim" / drill.name, key=f"openbell-drill-{drill.account}",
                          secret=f"{DEMO_SECRET}-{drill.account}", extra_args=list(drill.sim_args),
                          port=self.ports[drill.name])

    def run(self, drills: Sequence[Drill], together: int = TOGETHER) -> dict[str, DrillResult]:
        """Run ``drills``, at most ``together`` in flight, each started once the one before it trades; each
        drill's result, by name. A drill whose day could not end spoils the stage (:attr:`spoiled`)."""
        if self.spoiled:
            raise RuntimeError("a drill's run on this stage did not end: run the next drills on a new stage")
        again = [d.name for d in drills if d.name in self.done or d.name not in self.drills]
        if again:
            raise ValueError(f"drills {again} were run on this stage already or are not its own")
        self.done |= {d.name for d in drills}
        results: dict[str, DrillResult] = {}
        days: list[Rehearsal] = []
        flights: dict[str, threading.Thread] = {}
        try:
            for drill in drills:
                while sum(f.is_alive() for f in flights.values()) >= max(1, together):
                    time.sleep(0.5)
                day = self._day(drill)
                days.append(day)
                flight = flights[drill.name] = threading.Thread(target=self._fly, args=(drill, day, results),
                                                                name=f"drill-{drill.name}", daemon=True)
                flight.start()
                _await_trading(day, flight)
            for flight in flights.values():
                flight.join()
        finally:
            for drill in drills:
                if drill.name not in flights:  # not started: the stage broke before its turn
                    self._unfinished.add(drill.name)
                    results[drill.name] = DrillResult(drill.name, ["the drill could not run: the stage broke"])
            stop_all([*(day.engine.dispose for day in days), *([self.close] if self.spoiled else []),
                      *(day.sim.stop for day in days)])
        return {d.name: results[d.name] for d in drills}

    def _day(self, drill: Drill) -> Rehearsal:
        sim = self._simulator(drill)
        shutil.rmtree(sim.data_dir, ignore_errors=True)
        day = Rehearsal(self.stack.for_dag(day_dag_id(drill.account)), sim, self.servers[0],
                        scoped_url(self.state_url, drill.account))
        day.engine  # noqa: B018 - made here, before the drill's threads share it
        return day

    def _fly(self, drill: Drill, day: Rehearsal, results: dict[str, DrillResult]) -> None:
        """One drill's day, on a thread of its own: its market, its run, its fault (on a thread of its own too),
        its checks; the result lands in ``results``."""
        watch = DrillWatch(drill)
        try:
            day.sim.start()
            day.stack.unpause()  # only now: no task may start before the simulated market exists
            day.run_id = _wait_for_run(day.stack, drill.date, timeout=120)
            self.progress(f"{drill.name}: {drill.about}; run {day.run_id} against {day.sim.base_url}, "
                          f"{drill.speed:g}x from {drill.start} ET")
            injected = _inject(watch, day, results)
            state, tasks = _follow(day.stack, day.sim, day.run_id, RUN_TIMEOUT,
                                   labelled(self.progress, drill.name))
        except Exception as exc:
            self._unfinished.add(drill.name)
            results[drill.name] = watch.failed(exc)
            return
        injected.join(timeout=60)
        try:
            if drill.name not in results:
                watch.finished(day)
                report = build_report(day.engine, drill.date)
                results[drill.name] = watch.result(DayResult(day.run_id, state, tasks, report))
        except Exception as exc:
            results[drill.name] = watch.failed(exc)
        finally:
            day.sim.stop()


def _own_market(url: str) -> None:
    """The account of ``url`` created, with a bars table of its own in its schema, which its day's steps and checks
    read and write instead of the shared one."""
    upgrade(url)
    engine = make_engine(url, pool_size=1, max_overflow=0)
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE bars (LIKE public.bars INCLUDING ALL)"))  # in the account's schema
    finally:
        engine.dispose()


def _await_trading(day: Rehearsal, flight: threading.Thread) -> None:
    """Until the day's live_trading runs or its drill ended (at most :data:`TRADING_TIMEOUT` wall seconds)."""
    deadline = time.monotonic() + TRADING_TIMEOUT
    while flight.is_alive() and time.monotonic() < deadline:
        try:
            if day.run_id and running_attempt(day, "live_trading"):
                return
        except Exception as exc:  # the account's first step may be creating its tables
            log.debug("not trading yet: %s", exc)
        time.sleep(0.5)


def _inject(watch: DrillWatch, day: Rehearsal, results: dict[str, DrillResult]) -> threading.Thread:
    """Inject the drill's fault on a thread of its own; a fault that could not be injected is the drill's result."""

    def inject() -> None:
        try:
            watch.on_running(day)
        except Exception as exc:
            log.exception("drill %s: the fault could not be injected", watch.drill.name)
            results[watch.drill.name] = watch.failed(exc)

    thread = threading.Thread(target=inject, name=f"inject-{watch.drill.name}", daemon=True)
    thread.start()
    return thread


def run_all(drills: Sequence[Drill], parent: Path, *, together: int = TOGETHER,
            progress: Callable[[str], None] = log.info) -> Iterator[DrillResult]:
    """Run ``drills``: those that share a stage first, on one stage under ``parent`` (a new one after a drill that
    spoiled it), at most ``together`` in flight; then each of the others on a stage of its own. Yields each result
    as its group ends."""
    left = [d for d in drills if d.shares_stage]
    stage: DrillStage | None = None
    try:
        for group in groups(left):
            if stage is None or stage.spoiled:
                if stage is not None:
                    stage.close()
                stage = DrillStage(left, parent, progress).__enter__()
            results = stage.run(group, together)
            left = [d for d in left if d.name not in results]
            yield from results.values()
    finally:
        if stage is not None:
            stage.close()
    for drill in drills:
        if not drill.shares_stage:
            yield run_in_scratch(drill, parent, progress=progress)


def main(argv: list[str] | None = None) -> int:
    """``openbell drill [NAME ...]``: run fault drills against the simulator; exits 1 if any failed."""
    parser = argparse.ArgumentParser(prog="openbell drill", description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"drills to run (default: all): {', '.join(DRILLS)}")
    parser.add_argument("--together", type=int, default=TOGETHER, metavar="N",
                        help=f"drills that leave Airflow alone: at most N in flight on one stage (default {TOGETHER})")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in DRILLS]
    if unknown:
        parser.error(f"unknown drill(s) {', '.join(unknown)}; choose from {', '.join(DRILLS)}")
    if args.together < 1:
        parser.error(f"--together must be at least 1, not {args.together}")
    logging.basicConfig(level=logging.WARNING)
    shown = functools.partial(print, flush=True)
    failed = 0
    for result in run_all([DRILLS[n] for n in dict.fromkeys(args.names or DRILLS)], Path(tempfile.gettempdir()),
                          together=args.together, progress=shown):
        failed += not result.passed
        shown(f"drill {result.drill}: {DRILLS[result.drill].about}")
        shown(json.dumps(result.facts, indent=2, default=str))
        verdict = "PASSED" if result.passed else "FAILED\n  " + "\n  ".join(result.violations)
        shown(f"drill {result.drill}: {verdict}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
