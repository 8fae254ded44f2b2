"""The step ledger records every ending of a step."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from sqlalchemy import Engine

from openbell.store.ledger import ABANDONED, step, steps_for

DAY = date(2025, 3, 3)


def _body(summary: dict) -> dict:
    """The summary without the attempt's process (host, pid)."""
    return {k: v for k, v in summary.items() if k != "process"}


def test_success_records_running_then_success_with_summary(engine: Engine) -> None:
    with step(engine, DAY, "download", attempt=1, run_id="scheduled__2025-03-03") as record:
        during = steps_for(engine, DAY)
        record.summary["rows"] = 390
        record.summary["as_of"] = date(2025, 3, 3)
        record.summary["cash"] = Decimal("1000.50")
    assert [(r["step"], r["status"], r["ended"]) for r in during] == [("download", "running", None)]
    [row] = steps_for(engine, DAY)
    assert row["status"] == "success"
    assert row["attempt"] == 1
    assert row["run_id"] == "scheduled__2025-03-03"
    assert _body(row["summary"]) == {"rows": 390, "as_of": "2025-03-03", "cash": "1000.50"}
    assert row["error"] is None
    assert row["ended"] >= row["started"]


def test_failure_records_error_and_reraises(engine: Engine) -> None:
    with (
        pytest.raises(RuntimeError, match="broker said no"),
        step(engine, DAY, "reconcile", attempt=2) as rec,
    ):
        rec.summary["checked"] = 3
        raise RuntimeError("broker said no")
    [row] = steps_for(engine, DAY)
    assert row["status"] == "failed"
    assert row["error"] == "RuntimeError: broker said no"
    assert _body(row["summary"]) == {"checked": 3}
    assert row["ended"] is not None


def test_skip_with_reason(engine: Engine) -> None:
    with step(engine, DAY, "midday_optimize") as record:
        record.skip("not enough history")
    [row] = steps_for(engine, DAY)
    assert (row["status"], _body(row["summary"]), row["error"]) == (
        "skipped",
        {"reason": "not enough history"},
        None,
    )


def test_attempts_are_separate_rows_per_session(engine: Engine) -> None:
    with pytest.raises(ValueError), step(engine, DAY, "download", attempt=1):
        raise ValueError("timeout")
    with step(engine, DAY, "download", attempt=2) as record:
        record.summary["nan_is_null"] = float("nan")
    with step(engine, date(2025, 3, 4), "download"):
        pass
    rows = steps_for(engine, DAY)
    assert [(r["attempt"], r["status"]) for r in rows] == [(1, "failed"), (2, "success")]
    assert _body(rows[1]["summary"]) == {"nan_is_null": None}
    assert len(steps_for(engine, date(2025, 3, 4))) == 1


def test_an_invalid_status_fails_the_step(engine: Engine) -> None:
    with pytest.raises(ValueError, match="invalid step status"), step(engine, DAY, "x") as record:
        record.status = "done"
    [row] = steps_for(engine, DAY)
    assert row["status"] == "failed"


def test_an_attempt_that_died_running_is_closed_by_the_next_one(engine: Engine) -> None:
    killed = step(engine, DAY, "live_trading", attempt=1)
    killed.__enter__()  # entered, never exited: the process died mid-step
    [running] = steps_for(engine, DAY)
    assert running["status"] == "running"
    assert running["summary"]["process"]["pid"] > 0
    with step(engine, DAY, "live_trading", attempt=2) as record:
        assert record.summary["abandoned_attempts"] == [1]
    first, second = steps_for(engine, DAY)
    assert (first["attempt"], first["status"], first["error"]) == (1, "failed", ABANDONED)
    assert (second["attempt"], second["status"]) == (2, "success")
    assert second["summary"]["abandoned_attempts"] == [1]
