"""trading_day: one NYSE session on Alpaca, from the opening bell to a flat account.

One ``trading_day`` on ``alpaca_default``, or with an accounts file one ``trading_day_<name>`` per account
(:mod:`openbell.workflow.accounts`).

This file only wires tasks; every step's logic lives in the ``openbell`` package (``openbell.workflow``).
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import DAG, TriggerRule, task

from openbell.alerts.callbacks import EndOfDayAlert, StepAlert
from openbell.params import dag_params
from openbell.workflow import steps
from openbell.workflow.accounts import (
    DAY,
    DagAccount,
    check_account_run_params,
    dag_accounts,
    refused_dag,
)
from openbell.workflow.operators import MarketTimeRetry
from openbell.workflow.sensors import LiveTradingSensor
from openbell.workflow.timed import EodLiquidate, MiddayOptimize, WaitForOpen
from openbell.workflow.timetable import NYSESessionTimetable, schedule_end_date

SESSION = timedelta(hours=7)
WAIT = timedelta(hours=16)  # a run is created at 09:00 ET; the latest wait ends before the close
LEAD = 30.0  # wall seconds a market-time trigger fires early; the task waits out the rest itself
# Alerts go to the Airflow connection openbell_notify (Apprise); without it, none are sent.
STEP_ALERT = [StepAlert()]
# An api-server outage fails every attempt that starts until it is back: retries back off from 5 s to 60 s,
# about 7 wall minutes in all, so a step outlasts a few minutes of outage. The liquidation has its own.
OUTLAST_OUTAGE = {"retries": 10, "retry_delay": timedelta(seconds=5), "retry_exponential_backoff": 2.0,
                  "max_retry_delay": timedelta(seconds=60)}


def trading_day(account: DagAccount) -> DAG:
    """The trading day of one account (the default account's is ``trading_day``)."""
    with DAG(
        dag_id=account.dag_id(DAY),
        description="Wait for the open, prepare data and positions, trade the session, be flat at the close.",
        schedule=NYSESessionTimetable(),
        start_date=pendulum.datetime(2020, 1, 1, tz="America/New_York"),
        end_date=schedule_end_date(),
        catchup=False,
        max_active_runs=3,
        params=dag_params(account.defaults),
        default_args={**OUTLAST_OUTAGE, "on_failure_callback": STEP_ALERT, "on_retry_callback": STEP_ALERT},
        tags=account.tags("trading"),
        doc_md=__doc__,
    ) as dag:
        # The run's params are checked against the chosen strategy before the wait, not at the open.
        wait_for_open = WaitForOpen(
            anchor="open", offset_param="open_offset_minutes", execution_timeout=WAIT,
            pre_execute=check_account_run_params, conn_id=account.conn_id,
        )

        @task(execution_timeout=timedelta(minutes=30))
        def download(**context: object) -> dict:
            return steps.download(context)

        @task(trigger_rule=TriggerRule.NONE_FAILED, execution_timeout=timedelta(minutes=15))
        def todays_bars(**context: object) -> dict:
            return steps.todays_bars(context)

        @task(trigger_rule=TriggerRule.NONE_FAILED, execution_timeout=timedelta(minutes=15))
        def reconcile(**context: object) -> dict:
            return steps.reconcile(context)

        live_trading = LiveTradingSensor(
            task_id="live_trading",
            trigger_rule=TriggerRule.NONE_FAILED,
            execution_timeout=SESSION,
            timeout=SESSION.total_seconds(),
        )

        midday_optimize = MiddayOptimize(
            anchor="close", offset_param="optimize_minutes_before_close", offset_scale=-1,
            lead_seconds=LEAD, trigger_rule=TriggerRule.NONE_FAILED, execution_timeout=WAIT, conn_id=account.conn_id,
        )

        # Liquidation runs whatever happened upstream: the account is never left holding overnight. It retries
        # every 5 market seconds until the close, not after it (an attempt killed, or unable to start while the
        # api-server is down, is retried after one wall second): 20 retries cover the two minutes at 1x.
        eod_liquidate = EodLiquidate(
            anchor="close", offset_param="liquidate_minutes_before_close", offset_scale=-1,
            lead_seconds=LEAD, trigger_rule=TriggerRule.ALL_DONE, retries=20, retry_delay=timedelta(seconds=1),
            retry_policy=MarketTimeRetry(market_seconds=5, until_close=True, conn_id=account.conn_id),
            execution_timeout=WAIT, conn_id=account.conn_id,
            on_success_callback=[EndOfDayAlert()], on_failure_callback=[*STEP_ALERT, EndOfDayAlert()],
        )

        data = wait_for_open >> download() >> todays_bars()
        data >> reconcile() >> live_trading
        data >> midday_optimize  # it searches over the stored bars: today's must be in
        wait_for_open >> eod_liquidate
    return dag


ACCOUNTS = dag_accounts()  # an accounts file refused as a whole fails this file's import, naming the file
for _account in ACCOUNTS.accounts:
    globals()[_account.dag_id(DAY)] = trading_day(_account)
if ACCOUNTS.refused:  # an import error naming each refused account; the others' DAGs load
    refused = refused_dag(DAY, ACCOUNTS.refused)
