"""Orphans stop themselves: real processes whose parent is SIGKILLed, no mocks.

A trading process whose supervisor died stops its loop, runs its clean-up and releases the session
lock; one told to stop by SIGTERM does the same; one that cannot stop in time is ended. An order worker
exits when its parent dies, even while something else keeps its stdin open. Stopping the local Airflow
stack ends the processes its processes moved to groups of their own.
"""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from dates import SESSION
from openbell.sim.testing import SimProcess
from openbell.store.db import make_engine
from openbell.trading.fence import SessionLock
from openbell.trading.supervision import LOST_EXIT_CODE


def _gone(pid: int) -> bool:
    """No such process, or only its zombie (a container's init may not reap orphans)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def _wait_until(check: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"not within {timeout:.0f}s: {what}"
        time.sleep(0.05)


def _python(code: str, *args: str, **kw: object) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args], text=True,
                            stdout=subprocess.PIPE, **kw)  # type: ignore[call-overload]


# The trading process stand-in: holds the session lock and "trades" under supervised() until stopped.
TRADER = """
    import asyncio, signal, sys
    from datetime import date
    from pathlib import Path
    from openbell.trading.fence import SessionLock
    from openbell.trading.supervision import SupervisorLost, supervised
    from openbell.store.db import make_engine

    url, marks, blocking = sys.argv[1], Path(sys.argv[2]), sys.argv[3] == "block"
    signal.signal(signal.SIGTERM, lambda *_: marks.open("a").write("on_kill\\n"))  # Airflow's own handler

    async def trade():
        try:
            marks.open("a").write("trading\\n")
            while True:
                if blocking:
                    import time; time.sleep(60)  # a loop that never yields again
                await asyncio.sleep(0.05)
        finally:
            marks.open("a").write("cleaned\\n")

    with SessionLock(make_engine(url), date(2025, 11, 20), wait=5):
        try:
            asyncio.run(supervised(trade(), exit_after=2.0))
        except SupervisorLost as exc:
            marks.open("a").write(f"lost: {exc}\\n")
    marks.open("a").write("released\\n")
"""

# Starts the trader as its child, says the child's pid, and waits to be killed.
PARENT = """
    import subprocess, sys, time
    child = subprocess.Popen([sys.executable, "-c", sys.argv[1], *sys.argv[2:]])
    print(child.pid, flush=True)
    time.sleep(600)
"""


def _lock_is_free(url: str) -> bool:
    lock = SessionLock(make_engine(url), SESSION, wait=0)
    try:
        lock.acquire()
    except Exception:
        return False
    lock.release()
    return True


def test_a_trading_process_whose_supervisor_dies_stops_and_releases_the_session_lock(
    state_url: str, tmp_path: Path
) -> None:
    marks = tmp_path / "marks"
    parent = _python(PARENT, textwrap.dedent(TRADER), state_url, str(marks), "yield")
    child = int(parent.stdout.readline())  # type: ignore[union-attr]
    try:
        _wait_until(lambda: marks.exists() and "trading" in marks.read_text(), 30, "the trader started")
        assert not _lock_is_free(state_url)
        parent.kill()  # the supervisor dies; the trader is reparented
        parent.wait()
        killed = time.monotonic()
        _wait_until(lambda: _gone(child), 10, "the orphan stopped")
        assert time.monotonic() - killed < 5
        lines = marks.read_text().splitlines()
        assert lines[0] == "trading" and lines[1] == "cleaned" and lines[-1] == "released", lines
        assert lines[2].startswith("lost: stopped trading: the supervisor (pid ") and "is gone" in lines[2]
        assert _lock_is_free(state_url)  # Airflow's next attempt can take the session over
    finally:
        for pid in (child, parent.pid):
            if not _gone(pid):
                os.kill(pid, signal.SIGKILL)


def test_sigterm_stops_a_trading_process_after_airflows_own_handler(state_url: str, tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(TRADER), state_url, str(marks), "yield"])
    try:
        _wait_until(lambda: marks.exists() and "trading" in marks.read_text(), 30, "the trader started")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        lines = marks.read_text().splitlines()
        assert lines == ["trading", "on_kill", "cleaned", "lost: stopped trading: received SIGTERM", "released"]
        assert _lock_is_free(state_url)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_a_trading_process_that_cannot_stop_is_ended_and_its_lock_released(state_url: str, tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(TRADER), state_url, str(marks), "block"])
    try:
        _wait_until(lambda: marks.exists() and "trading" in marks.read_text(), 30, "the trader started")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == LOST_EXIT_CODE  # two seconds after the loss (exit_after)
        assert "cleaned" not in marks.read_text()
        _wait_until(lambda: _lock_is_free(state_url), 10, "Postgres released the lock")
    finally:
        if proc.poll() is None:
            proc.kill()


# Starts one order worker and says its pid; with "hold", a sleeping process keeps the worker's stdin open.
WORKER_PARENT = """
    import pickle, subprocess, sys, time
    from openbell.adapters.alpaca.broker import AlpacaBroker
    from openbell.trading.sender import OrderSender

    config = pickle.loads(open(sys.argv[1], "rb").read())
    sender = OrderSender(AlpacaBroker(config), print, workers=1, threads=1)
    sender.start()
    worker = sender._workers[0]
    holder = None
    if sys.argv[2] == "hold":
        fd = worker.proc.stdin.fileno()
        holder = subprocess.Popen(["sleep", "600"], pass_fds=[fd])
    print(worker.proc.pid, holder.pid if holder else 0, flush=True)
    time.sleep(600)
"""


def _worker_dies_with_its_parent(tmp_path: Path, mode: str) -> None:
    with SimProcess(date=SESSION.isoformat(), speed=1, start="10:00", data_dir=tmp_path / "sim") as sim:
        config_file = tmp_path / "config.pickle"
        config_file.write_bytes(pickle.dumps(sim.config()))
        parent = _python(WORKER_PARENT, str(config_file), mode)
        worker, holder = (int(x) for x in parent.stdout.readline().split())  # type: ignore[union-attr]
        try:
            assert not _gone(worker)
            parent.kill()
            parent.wait()
            killed = time.monotonic()
            _wait_until(lambda: _gone(worker), 10, "the order worker exited")
            assert time.monotonic() - killed < 6
        finally:
            for pid in (worker, holder):
                if pid and not _gone(pid):
                    os.kill(pid, signal.SIGKILL)


def test_an_order_worker_exits_when_its_parent_is_killed(tmp_path: Path) -> None:
    _worker_dies_with_its_parent(tmp_path, "plain")


def test_an_order_worker_exits_when_its_parent_is_killed_though_its_stdin_stays_open(tmp_path: Path) -> None:
    _worker_dies_with_its_parent(tmp_path, "hold")


# An Airflow process stand-in: its child moves to a group of its own (as the Task SDK does with a task
# process) and ignores SIGTERM (as a task process does outside the trading loop).
STUBBORN = """
    import os, signal, subprocess, sys, time
    code = "import os, signal, time; os.setpgid(0, 0); signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"
    child = subprocess.Popen([sys.executable, "-c", code])
    print(child.pid, flush=True)
    time.sleep(600)
"""


def test_stopping_the_stack_ends_the_processes_its_processes_put_in_groups_of_their_own(tmp_path: Path) -> None:
    from openbell.adapters.alpaca.config import AlpacaConfig
    from openbell.runtime.airflow import AirflowStack

    stack = AirflowStack(tmp_path / "airflow", "postgresql://x@127.0.0.1:1/a", "postgresql://x@127.0.0.1:1/b",
                         AlpacaConfig(key_id="k", secret_key="s"), api_port=1)
    proc = _python(STUBBORN, start_new_session=True)
    stack.procs["scheduler"] = proc  # type: ignore[assignment]
    child = int(proc.stdout.readline())  # type: ignore[union-attr]
    try:
        _wait_until(lambda: os.getpgid(child) == child, 10, "the child has a group of its own")
        assert os.getpgid(proc.pid) != child  # out of reach of a signal to the stack process's group
        started = time.monotonic()
        stack.stop(grace=1.0)
        assert _gone(child) and proc.poll() is not None
        assert time.monotonic() - started < 5
    finally:
        for pid in (child, proc.pid):
            if not _gone(pid):
                os.kill(pid, signal.SIGKILL)
