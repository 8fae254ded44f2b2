"""The morning at real speed: how long after the bell openbell decides its first minute.

Run: ``.venv/bin/python -m bench morning_bench``. The session 2025-11-20 through a real Airflow (scheduler,
triggerer, api-server; the stack's own start is not counted) against the simulator at 1x from 09:27 ET,
stopped once the first live decision is recorded (about 4 wall minutes after the stack is up). Prints the
market seconds from 09:30:00 to that decision (its row in ``decisions`` seen by a 50 ms poll; the 09:30
minute ends at 09:31:00, so 60 s of it is the minute itself) and, per step of the morning from the step
ledger: when it started (market seconds after 09:30:00), how long Airflow took to start it after its
upstream ended (its start-up), and how long it ran; for ``live_trading``, from its start to the first
decision.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from datetime import date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import text

from openbell import calendar
from openbell.clock import ClockMapping
from openbell.pg.throwaway import reachable_tempdir
from openbell.runtime.rehearsal import Rehearsal, rehearse
from openbell.store.ledger import steps_for

SESSION = date(2025, 11, 20)
START = "09:27"
MORNING = ("wait_for_open", "download", "todays_bars", "reconcile", "live_trading")
UPSTREAM = {"download": "wait_for_open", "todays_bars": "download", "reconcile": "todays_bars",
            "live_trading": "reconcile"}


class _Measured(Exception):
    """Raised from the rehearsal's hook once the figures are in: it ends the rehearsal early."""


def _first_decision(day: Rehearsal, timeout: float = 900.0) -> datetime:
    """Market time at which the decisions table gained its first row."""
    deadline = time.monotonic() + timeout
    mapping = ClockMapping.from_json(day.sim.clock())
    while time.monotonic() < deadline:
        day.stack.check_alive()
        with day.engine.connect() as conn:
            if conn.execute(text("SELECT 1 FROM decisions WHERE session_date = :d LIMIT 1"), {"d": SESSION}).first():
                return mapping.market_at(time.time())
        time.sleep(0.05)
    raise TimeoutError(f"no decision within {timeout:.0f} s")


def measure(day: Rehearsal) -> dict[str, Any]:
    """The morning's figures of a running rehearsal (blocks until the first decision)."""
    session = calendar.session(SESSION)
    assert session is not None
    first = _first_decision(day)
    mapping = ClockMapping.from_json(day.sim.clock())

    def market(t: datetime | None) -> float | None:
        return None if t is None else (mapping.market_at(t.timestamp()) - session.open).total_seconds()

    ledger = {r["step"]: r for r in steps_for(day.engine, SESSION) if r["step"] in MORNING}
    steps: dict[str, dict[str, float | None]] = {}
    for step in MORNING:
        row = ledger.get(step)
        if row is None:
            continue
        start, end = market(row["started"]), market(row["ended"])
        before = ledger.get(UPSTREAM.get(step, ""))
        ended_before = market(before["ended"]) if before else 0.0  # wait_for_open: from 09:30:00
        steps[step] = {"start": start, "startup": None if start is None or ended_before is None
                       else start - ended_before, "ran": None if end is None or start is None else end - start}
    first_s = (first - session.open).total_seconds()
    if "live_trading" in steps and steps["live_trading"]["start"] is not None:
        steps["live_trading"]["ran"] = first_s - float(steps["live_trading"]["start"] or 0.0)
    return {"first_decision_s": first_s, "steps": steps}


def run() -> list[tuple[str, float, str]]:
    """Measure and print (name, value, unit) rows."""
    figures: dict[str, Any] = {}

    def on_running(day: Rehearsal) -> None:
        figures.update(measure(day))
        raise _Measured

    home = reachable_tempdir(Path(tempfile.gettempdir()), "ob-morning-bench-")
    try:
        rehearse(SESSION, speed=1.0, start=START, home=home, progress=lambda line: print(f"  {line}", flush=True),
                 on_running=on_running, timeout=1200)
    except _Measured:
        pass
    finally:
        shutil.rmtree(home, ignore_errors=True)
    nan = float("nan")
    rows: list[tuple[str, float, str]] = [("09:30:00 -> first live decision (1x)", figures["first_decision_s"],
                                           "market s")]
    for step, f in figures["steps"].items():
        rows.append((f"{step}: started after 09:30:00", f["start"] if f["start"] is not None else nan, "market s"))
        rows.append((f"{step}: start-up (after its upstream ended)", f["startup"] if f["startup"] is not None
                     else nan, "market s"))
        what = "start -> first decision" if step == "live_trading" else "ran"
        rows.append((f"{step}: {what}", f["ran"] if f["ran"] is not None else nan, "market s"))
    for name, value, unit in rows:
        print(f"{name:<52} {value:>10.3f} {unit}")
    return rows


if __name__ == "__main__":
    run()
