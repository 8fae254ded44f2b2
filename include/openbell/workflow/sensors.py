"""The trading task as an Airflow sensor: one poke trades the session and succeeds at the close."""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseSensorOperator

from openbell.workflow import steps
from openbell.workflow.deployment import check_execution_token

TRADING_QUEUE = "trading"  # on CeleryExecutor, live_trading's worker is not shared with the other steps


class LiveTradingSensor(BaseSensorOperator):
    """Streams bars and trades until the session is over; every attempt resumes from Postgres and the broker.

    A single poke runs the whole session (the sensor's timeout and ``execution_timeout`` bound it); an
    error fails the attempt and Airflow's retry starts a fresh one that reconciles and continues. On
    CeleryExecutor it goes to the :data:`TRADING_QUEUE` (LocalExecutor has no queues).
    """

    ui_color = "#fdebd0"

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("mode", "poke")
        kwargs.setdefault("poke_interval", 5)
        kwargs.setdefault("queue", TRADING_QUEUE)
        super().__init__(**kwargs)

    def poke(self, context: Any) -> bool:
        check_execution_token()  # a deployment that cannot hold the session is refused before any order
        steps.live_trading(context)
        return True
