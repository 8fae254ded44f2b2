"""Airflow notifiers for the trading day's task callbacks.

- :class:`StepAlert` (``on_failure_callback`` and ``on_retry_callback`` of every task): one alert per step
  and run, keyed ``dag_id/run_id/task_id``, so a step that fails and is retried twice alerts once.
- :class:`EndOfDayAlert` (``on_success_callback`` and ``on_failure_callback`` of ``eod_liquidate``): the
  end-of-day summary, and an alert when the account is not flat at the close.

Both run wherever Airflow runs task callbacks (the task's process, or the DAG processor for a task that
lost its heartbeat) and never raise: a failing channel or database never fails a step.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from typing import Any

from airflow.sdk import BaseNotifier
from sqlalchemy import Engine

from openbell.alerts.notify import Level, Outcome, alert
from openbell.alerts.summary import not_flat_text, summary_text
from openbell.calendar import run_session

log = logging.getLogger(__name__)

STEP_FAILED = "step_failed"
EOD_SUMMARY = "eod_summary"
NOT_FLAT = "not_flat"
_ERROR_LIMIT = 1500


@contextmanager
def state_engine(context: Any) -> Iterator[Engine | None]:
    """An engine on the state of the context's account (the ``openbell_db`` connection), or None when it
    cannot be had."""
    from openbell.store.db import ensure_current, make_engine
    from openbell.workflow.accounts import account_state_url, run_account
    from openbell.workflow.hooks import StateDbHook

    try:
        account = run_account(context)
        engine = make_engine(account_state_url(StateDbHook().get_uri(), account), pool_size=1, max_overflow=1)
        if account is not None:  # an account that never ran a step: its own journal, never the shared schema's
            try:
                ensure_current(engine)
            except BaseException:
                engine.dispose()
                raise
    except Exception as exc:
        log.warning("alerts: no state database (%s)", type(exc).__name__)
        yield None
        return
    try:
        yield engine
    finally:
        engine.dispose()


def session_date_of(context: Any) -> date:
    """The session date of the context's DAG run."""
    return run_session(context["dag_run"]).date


def step_key(context: Any) -> str:
    """``dag_id/run_id/task_id`` (with ``[map_index]`` for a mapped task): the same for every attempt."""
    ti = context["ti"]
    key = f"{ti.dag_id}/{ti.run_id}/{ti.task_id}"
    map_index = getattr(ti, "map_index", -1)
    return key if map_index is None or map_index < 0 else f"{key}[{map_index}]"


def _state(ti: Any) -> str:
    state = getattr(ti, "state", None)
    return str(getattr(state, "value", state) or "")


def step_alert_text(context: Any) -> tuple[str, str]:
    """The title and body of a step's failure or retry alert."""
    ti = context["ti"]
    session = session_date_of(context)
    try_number = int(getattr(ti, "try_number", 1) or 1)
    tries = int(getattr(ti, "max_tries", 0) or 0) + 1
    retrying = _state(ti) == "up_for_retry"
    verb = "failed, retrying" if retrying else "failed"
    title = f"openbell {session}: {ti.task_id} {verb}"
    error = context.get("exception")
    lines = [
        f"Step {ti.task_id} of run {ti.run_id} (DAG {ti.dag_id}) {verb}: attempt {try_number} of {tries}.",
        "Further attempts of this step in this run will not alert again; the end-of-day summary counts them.",
    ]
    if error is not None:
        lines.append(f"Error: {type(error).__name__}: {str(error)[:_ERROR_LIMIT]}")
    log_url = getattr(ti, "log_url", None)
    if log_url:
        lines.append(f"Log: {log_url}")
    return title, "\n".join(lines)


def send_step_alert(context: Any) -> Outcome:
    """Alert once for the failing (or retrying) step of ``context``."""
    title, body = step_alert_text(context)
    with state_engine(context) as engine:
        return alert(STEP_FAILED, step_key(context), title, body, session_date=session_date_of(context),
                     engine=engine, level=Level.FAILURE)


def send_end_of_day(context: Any) -> dict[str, Outcome]:
    """The end-of-day summary of the context's session, and the not-flat alert when it is not flat."""
    from openbell.report import build_report

    session = session_date_of(context)
    dag_run = context["dag_run"]
    key = f"{getattr(dag_run, 'dag_id', '')}/{dag_run.run_id}"
    with state_engine(context) as engine:
        if engine is None:
            title, body = f"openbell {session}: no end-of-day summary", "The state database could not be reached."
            return {EOD_SUMMARY: alert(EOD_SUMMARY, key, title, body, session_date=session, level=Level.WARNING)}
        report = build_report(engine, session)
        flat = bool(report["flat_at_close"])
        title, body = summary_text(report)
        sent = {EOD_SUMMARY: alert(EOD_SUMMARY, key, title, body, session_date=session, engine=engine,
                                   level=Level.SUCCESS if flat else Level.WARNING)}
        if not flat:
            title, body = not_flat_text(report)
            sent[NOT_FLAT] = alert(NOT_FLAT, key, title, body, session_date=session, engine=engine)
        return sent


class StepAlert(BaseNotifier):
    """Task failure and retry callback: one alert per step and run (see :func:`send_step_alert`)."""

    def notify(self, context: Any) -> None:
        try:
            send_step_alert(context)
        except Exception:
            log.exception("step alert not sent")


class EndOfDayAlert(BaseNotifier):
    """``eod_liquidate``'s success and final-failure callback (see :func:`send_end_of_day`)."""

    def notify(self, context: Any) -> None:
        try:
            send_end_of_day(context)
        except Exception:
            log.exception("end-of-day summary not sent")
