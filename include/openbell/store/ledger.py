"""The step ledger: every attempt of every workflow step leaves a row, whatever its ending."""

from __future__ import annotations

import logging
import os
import socket
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sqlalchemy import Engine, func, insert, select, update

from openbell.store.models import STEP_STATUSES, StepRun

log = logging.getLogger(__name__)

_ERROR_LIMIT = 8000
ABANDONED = "the attempt ended without recording an outcome (its process was killed or lost)"


@dataclass
class StepRecord:
    """The ledger row of a running step. The body fills ``summary``; it may set ``status`` to "skipped"."""

    id: int
    session_date: date
    step: str
    attempt: int
    run_id: str
    status: str = "running"
    summary: dict[str, Any] = field(default_factory=dict)

    def skip(self, reason: str) -> None:
        """End the step as skipped, with ``reason`` in its summary."""
        self.status = "skipped"
        self.summary["reason"] = reason


def _error_text(exc: BaseException) -> str:
    text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    return text[:_ERROR_LIMIT] or type(exc).__name__


@contextmanager
def step(
    engine: Engine, session_date: date, step: str, *, attempt: int = 1, run_id: str = ""
) -> Iterator[StepRecord]:
    """Record one attempt of ``step``: "running" at entry, then "success" (or the status the body set),
    or "failed" with the error text when the body raises (the exception propagates).

    Each write is its own short transaction, so a crash mid-step leaves a visible "running" row; the
    next attempt of the same step marks such rows failed (``ABANDONED``) and lists them in its summary
    under ``"abandoned_attempts"``. ``summary["process"]`` names the attempt's process (host, pid).
    """
    process = {"host": socket.gethostname(), "pid": os.getpid()}
    with engine.begin() as conn:
        abandoned = conn.execute(
            update(StepRun)
            .where(StepRun.session_date == session_date, StepRun.step == step, StepRun.status == "running")
            .values(status="failed", ended_at=func.now(), error=ABANDONED)
            .returning(StepRun.attempt)
        ).scalars().all()
        row_id = conn.execute(
            insert(StepRun)
            .values(session_date=session_date, step=step, attempt=attempt, run_id=run_id, status="running",
                    summary={"process": process})
            .returning(StepRun.id)
        ).scalar_one()
    record = StepRecord(row_id, session_date, step, attempt, run_id, summary={"process": process})
    if abandoned:
        record.summary["abandoned_attempts"] = sorted(abandoned)
        log.warning("step %s: earlier attempt(s) %s ended without an outcome; marked failed", step,
                    sorted(abandoned))
    try:
        yield record
    except BaseException as exc:
        try:
            _finish(engine, record, "failed", _error_text(exc))
        except Exception:
            log.exception("could not record the failure of step %s (row %s)", step, row_id)
        raise
    status = record.status if record.status != "running" else "success"
    if status not in STEP_STATUSES:
        _finish(engine, record, "failed", f"invalid step status {status!r} set by the step")
        raise ValueError(f"invalid step status {status!r}; use one of {', '.join(STEP_STATUSES)}")
    _finish(engine, record, status, None)


def _finish(engine: Engine, record: StepRecord, status: str, error: str | None) -> None:
    record.status = status
    with engine.begin() as conn:
        conn.execute(
            update(StepRun)
            .where(StepRun.id == record.id)
            .values(status=status, ended_at=func.now(), summary=record.summary, error=error)
        )


def steps_for(engine: Engine, session_date: date) -> list[dict[str, Any]]:
    """One session's ledger, oldest first: id, step, attempt, run_id, status, started, ended, summary,
    error."""
    query = (
        select(StepRun)
        .where(StepRun.session_date == session_date)
        .order_by(StepRun.started_at, StepRun.id)
    )
    with engine.connect() as conn:
        rows = conn.execute(query).mappings().all()
    return [
        {
            "id": r["id"],
            "step": r["step"],
            "attempt": r["attempt"],
            "run_id": r["run_id"],
            "status": r["status"],
            "started": r["started_at"],
            "ended": r["ended_at"],
            "summary": r["summary"],
            "error": r["error"],
        }
        for r in rows
    ]
