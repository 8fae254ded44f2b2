"""``openbell demo --keep-running`` interrupted with Ctrl-C while live_trading trades leaves no process behind.

The demo runs in a process group of its own, as in a terminal, and gets the terminal's SIGINT there.
Every process it started (Postgres, the simulator, Airflow's processes, the task processes Airflow puts
in groups of their own and their order workers) carries the demo's home in its environment or its
command line; none may be left 30 seconds later.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg2
import pytest

from openbell.pg.server import EmbeddedPostgres
from openbell.pg.throwaway import reachable_tempdir

pytestmark = [pytest.mark.e2e, pytest.mark.alone]  # the stop is timed: not beside another stack
log = logging.getLogger(__name__)

DAY = "2025-11-20"
STOP_WITHIN = 30.0


def _carrying(home: Path) -> dict[int, str]:
    """Every live process (not a zombie) whose environment or command line names ``home``: pid -> cmdline."""
    mark = str(home).encode()
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            environ = Path(f"/proc/{entry}/environ").read_bytes()
        except (OSError, IndexError):
            continue
        if state not in ("Z", "X") and (mark in cmdline or mark in environ):
            found[int(entry)] = cmdline.replace(b"\0", b" ").decode(errors="replace").strip()
    return found


def _strategy_orders(home: Path) -> int:
    """Orders live_trading sent, from openbell's state database (0 while it does not exist yet)."""
    if not all((home / "pg" / name).exists() for name in ("port", "password")):
        return 0
    server = EmbeddedPostgres(home / "pg")
    try:
        conn = psycopg2.connect(host="127.0.0.1", port=server.port, user="openbell", password=server.password,
                                dbname="openbell_" + DAY.replace("-", ""), connect_timeout=3)
    except (psycopg2.Error, OSError, ValueError):
        return 0
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM orders WHERE origin = 'strategy'")
            return int(cur.fetchone()[0])  # type: ignore[index]
    except psycopg2.Error:
        return 0
    finally:
        conn.close()


def test_ctrl_c_while_trading_stops_every_process_the_demo_started(tmp_path: Path) -> None:
    home = reachable_tempdir(tmp_path, "openbell-interrupt-")
    env = {k: v for k, v in os.environ.items() if k != "OPENBELL_DATABASE_URL"} | {"OPENBELL_HOME": str(home)}
    out = (home / "demo.out").open("wb")
    cli = Path(sys.executable).with_name("openbell")
    demo = subprocess.Popen([str(cli), "demo", "--date", DAY, "--speed", "60", "--keep-running"], env=env,
                            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 600
        while _strategy_orders(home) == 0:
            assert demo.poll() is None, (home / "demo.out").read_text(errors="replace")[-3000:]
            assert time.monotonic() < deadline, "live_trading sent no order within 600s"
            time.sleep(1)
        before = _carrying(home)
        workers = [pid for pid, cmd in before.items() if "openbell.trading.sender" in cmd]
        assert workers, before  # live_trading's order workers are up

        os.killpg(demo.pid, signal.SIGINT)  # what Ctrl-C in the demo's terminal does
        interrupted = time.monotonic()
        demo.wait(timeout=STOP_WITHIN + 5)
        while (left := _carrying(home)) and time.monotonic() - interrupted < STOP_WITHIN:
            time.sleep(0.5)
        took = time.monotonic() - interrupted
        log.info("demo exited %s; everything gone after %.1fs", demo.returncode, took)
        assert left == {}, f"still running {took:.0f}s after Ctrl-C: {left}"
        assert demo.returncode == 130, (home / "demo.out").read_text(errors="replace")[-3000:]
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait()
        for pid in _carrying(home):  # only what this test's demo started
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        out.close()
        shutil.rmtree(home, ignore_errors=True)
