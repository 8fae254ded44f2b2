"""Fault drills through the real scheduler: each injects one fault into a simulated session and then
checks the day (run and steps succeeded, flat, no client_order_id twice, no order missing from Postgres,
every session minute stored for every symbol), plus proof that the fault really happened.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from openbell.runtime.drills import DRILLS, DrillResult, run_in_scratch
from openbell.store.ledger import ABANDONED

pytestmark = pytest.mark.e2e
log = logging.getLogger(__name__)


def _attempts(result: DrillResult, step: str) -> list[dict[str, Any]]:
    return list(result.facts["ledger"][step])


def _total(result: DrillResult, key: str) -> int:
    return sum(int(a.get(key) or 0) for a in _attempts(result, "live_trading"))


def _killed_then_resumed(result: DrillResult, step: str) -> None:
    [killed] = result.facts["killed"]
    attempts = _attempts(result, step)
    dead = [a for a in attempts if a["attempt"] == killed["attempt"]]
    assert dead and dead[0]["status"] == "failed" and dead[0]["error"] == ABANDONED, attempts
    assert attempts[-1]["status"] == "success" and attempts[-1]["attempt"] > killed["attempt"], attempts
    assert killed["attempt"] in attempts[-1]["abandoned_attempts"]


def _trading_resumed(result: DrillResult) -> None:
    _killed_then_resumed(result, "live_trading")
    last = _attempts(result, "live_trading")[-1]
    # The retry continues the decision sequence (no client_order_id can collide) and refills the minutes
    # it missed while no attempt was running.
    assert last["first_seq"] > 0
    assert last["refilled_bars"] > 0


def _cleared(result: DrillResult) -> None:
    _trading_resumed(result)
    assert result.facts["cleared"] == ["live_trading"]


def _drops(result: DrillResult) -> None:
    faults = result.facts["faults"]
    assert faults["stream_drop_events"] == 3
    assert faults["reconnects_refused"] > 0  # the 406 answers were waited out
    assert _total(result, "reconnects") + _total(result, "stream_restarts") >= 3
    assert _total(result, "refilled_bars") > 0


def _silence(result: DrillResult) -> None:
    assert result.facts["faults"]["silent_minutes"] == 5
    assert _total(result, "stream_restarts") >= 1  # silence past the threshold is treated as a drop


def _rest_errors(result: DrillResult) -> None:
    faults = result.facts["faults"]
    assert faults["rest_429"] > 0 and faults["rest_500"] > 0


def _postgres(result: DrillResult) -> None:
    retries = sum(int((a.get("writer") or {}).get("retries", 0)) for a in _attempts(result, "live_trading"))
    assert retries > 0 or len(_attempts(result, "live_trading")) > 1, result.facts["ledger"]["live_trading"]


def _corrected(result: DrillResult) -> None:
    assert _total(result, "bars_corrected") > 0


def _halted(result: DrillResult) -> None:
    halts = [(h["symbol"], h["change"]) for a in _attempts(result, "live_trading") for h in a.get("halts") or []]
    assert ("TQQQ", "halted") in halts and ("TQQQ", "resumed") in halts, halts


def _split(result: DrillResult) -> None:
    [download] = _attempts(result, "download")
    assert download["adjustment"] == "split" and download["jumps"] == [], download


def _buying_power(result: DrillResult) -> None:
    fitted = _total(result, "orders_scaled") + _total(result, "orders_resized")
    assert fitted > 0, result.facts["ledger"]["live_trading"]


def _within_limit(result: DrillResult) -> None:
    counters = result.facts["rate_limit"]
    assert counters["requests"] > 0 and counters["limited"] == 0 and counters["peak"] <= 30, counters


def _held_at_close(result: DrillResult) -> None:
    attempts = _attempts(result, "eod_liquidate")
    assert any("TQQQ" in a["error"] and "halted" in a["error"] for a in attempts), attempts


def _foreign(result: DrillResult) -> None:
    [reconcile] = _attempts(result, "reconcile")
    assert sorted(reconcile["adopted"]) == ["AAPL", "MSFT", "SQQQ", "TQQQ"], reconcile


CHECKS: dict[str, Callable[[DrillResult], None]] = {
    "halt_at_close": _held_at_close,
    "foreign_positions": _foreign,
    "rate_limited": _within_limit,
    "reverse_split": _split,
    "rejections": _buying_power,
    "corrections": _corrected,
    "halt_and_resume": _halted,
    "kill_trading_retry": _trading_resumed,
    "kill_trading_clear": _cleared,
    "stream_drops": _drops,
    "stream_silence": _silence,
    "rest_errors": _rest_errors,
    "postgres_restart": _postgres,
    "kill_liquidation": lambda result: _killed_then_resumed(result, "eod_liquidate"),
}


WHOLE_DAY = {"sparse_day"}  # run, with its checks, by test_trading_day.test_a_whole_day


def test_every_drill_has_a_check() -> None:
    assert set(CHECKS) | WHOLE_DAY == set(DRILLS)


@pytest.mark.parametrize("name", [n for n in DRILLS if n not in WHOLE_DAY])
def test_drill(name: str, tmp_path: Path) -> None:
    result = run_in_scratch(name, tmp_path, progress=log.info)
    log.info("drill %s facts: %s", name, result.facts)
    assert result.violations == []
    CHECKS[name](result)
