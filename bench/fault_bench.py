"""Fault drills through Airflow: how many pass, and how fast a killed trading task is trading again.

Runs every drill of ``openbell.runtime.drills`` (each a simulated session through the real scheduler
with one fault injected) and prints: drills passed out of drills run, and for the SIGKILL drills the
wall time from the retry's start (Airflow's try start) to its first decision on live (streamed) data.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from openbell.runtime.drills import DRILLS, DrillResult, run_in_scratch


def retry_to_first_live_decision(result: DrillResult) -> float | None:
    """Seconds from the retry's start (the try after the killed one) to its first live decision."""
    killed = next((k for k in result.facts.get("killed", []) if k["step"] == "live_trading"), None)
    if killed is None:
        return None
    tries = result.facts.get("trading_tries", [])
    retry = next((t for t in tries if int(t["try_number"]) > int(killed["attempt"]) and t.get("start_date")), None)
    attempts = result.facts.get("ledger", {}).get("live_trading", [])
    first = next((a.get("first_live_decision_at") for a in attempts
                  if a["attempt"] > killed["attempt"] and a.get("first_live_decision_at")), None)
    if retry is None or first is None:
        return None
    return (datetime.fromisoformat(first) - datetime.fromisoformat(retry["start_date"])).total_seconds()


def run() -> Iterator[tuple[str, float, str]]:
    passed = 0
    for name in DRILLS:
        print(f"  drill {name} ...", flush=True)
        result = run_in_scratch(name, Path(tempfile.gettempdir()))
        passed += result.passed
        verdict = "passed" if result.passed else "FAILED: " + "; ".join(result.violations)
        print(f"  drill {name}: {verdict} ({result.facts.get('wall_seconds', '?')} s wall)", flush=True)
        seconds = retry_to_first_live_decision(result)
        if seconds is not None:
            yield f"{name}: retry start -> first live decision (target < 10)", seconds, "s"
    yield f"fault drills passed (of {len(DRILLS)} run)", float(passed), "drills"
