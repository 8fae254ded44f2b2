"""trading_control: an operator halts, flattens or resumes a session's trading from the Airflow UI.

- **halt**: no new exposure (only orders that reduce a position); the 15:58 liquidation closes the rest.
- **flatten**: close every position now and trade no more this session.
- **resume**: trade normally again (the daily loss limit still counts from the open). After the daily loss
  stop only with ``extra_loss_budget``: the dollars of further loss accepted today, cumulative over the day's
  resumes and at most the deployment's daily loss ceiling times the open equity.

One ``trading_control`` for the default account, or one ``trading_control_<name>`` per account of the
accounts file. Manual trigger only; who may trigger it is Airflow's permission on this DAG. The triggering user, the
action and the reason are recorded in the step ledger and the journal, and alerted. This file only wires
the task; the logic is ``openbell.workflow.control``.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import DAG, task

from openbell.alerts.callbacks import StepAlert
from openbell.workflow import control
from openbell.workflow.accounts import CONTROL, DagAccount, dag_accounts, refused_dag

STEP_ALERT = [StepAlert()]


def trading_control_dag(account: DagAccount) -> DAG:
    """The operator's controls of one account (the default account's are ``trading_control``)."""
    with DAG(
        dag_id=account.dag_id(CONTROL),
        description="Halt, flatten or resume a session's trading (manual trigger only).",
        schedule=None,
        start_date=pendulum.datetime(2020, 1, 1, tz="America/New_York"),
        catchup=False,
        is_paused_upon_creation=False,
        max_active_runs=1,
        params=control.control_params(),
        default_args={"retries": 0, "on_failure_callback": STEP_ALERT},
        tags=account.tags("trading", "control"),
        doc_md=__doc__,
    ) as dag:

        @task(execution_timeout=timedelta(minutes=15))
        def trading_control(**context: object) -> dict:
            return control.trading_control(context)

        trading_control()
    return dag


ACCOUNTS = dag_accounts()
for _account in ACCOUNTS.accounts:
    globals()[_account.dag_id(CONTROL)] = trading_control_dag(_account)
if ACCOUNTS.refused:  # an import error naming each refused account; the others' DAGs load
    refused = refused_dag(CONTROL, ACCOUNTS.refused)
