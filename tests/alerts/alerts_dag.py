"""A two-step DAG wired like ``trading_day`` (the same notifiers), run by ``dag.test()`` in the alert tests.

``download`` fails every attempt when ``ALERTS_CHECK_FAIL`` is set; ``eod_liquidate`` records the account
flat unless ``ALERTS_CHECK_NOT_FLAT`` is set, then fails as the real step does. Both record the ledger in
the state database named by ``OPENBELL_DATABASE_URL``. Run as a script it prints the task states as JSON.
"""

from __future__ import annotations

import json
import os
from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import DAG, TriggerRule, get_current_context, task

from openbell.alerts.callbacks import EndOfDayAlert, StepAlert
from openbell.store import ledger
from openbell.store.db import make_engine

LOGICAL_DATE = pendulum.datetime(2025, 11, 20, 14, tz="UTC")
STEP_ALERT = [StepAlert()]


def _record(step: str) -> Any:
    context = get_current_context()
    engine = make_engine(os.environ["OPENBELL_DATABASE_URL"])
    return ledger.step(engine, LOGICAL_DATE.date(), step, attempt=context["ti"].try_number,
                       run_id=context["dag_run"].run_id)


with DAG(
    dag_id="alerts_check",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    default_args={"retries": 2, "retry_delay": timedelta(0),
                  "on_failure_callback": STEP_ALERT, "on_retry_callback": STEP_ALERT},
) as dag:

    @task
    def download() -> None:
        with _record("download"):
            if os.environ.get("ALERTS_CHECK_FAIL"):
                raise RuntimeError("the bars source is down")

    @task(trigger_rule=TriggerRule.ALL_DONE, retries=1,
          on_success_callback=[EndOfDayAlert()], on_failure_callback=[*STEP_ALERT, EndOfDayAlert()])
    def eod_liquidate() -> None:
        flat = not os.environ.get("ALERTS_CHECK_NOT_FLAT")
        with _record("eod_liquidate") as record:
            record.summary.update({"flat": flat, "positions_left": {} if flat else {"TQQQ": 12.0},
                                   "open_orders_left": 0 if flat else 1})
            if not flat:
                raise RuntimeError("account not flat: positions {'TQQQ': 12.0}, open orders 1")

    download() >> eod_liquidate()


if __name__ == "__main__":
    run = dag.test(logical_date=LOGICAL_DATE)
    print(json.dumps({"run_id": run.run_id, "states": {ti.task_id: str(ti.state) for ti in run.get_task_instances()}}))
