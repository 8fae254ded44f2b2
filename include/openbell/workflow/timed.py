"""The timed steps of the day: one operator per step that waits, deferred, for its market time and then acts.

Waiting in the step's own task (rather than in an upstream sensor) means no second task start-up lies
between the market time and the action, which matters for the 15:58 liquidation.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, ClassVar

from openbell.workflow import steps
from openbell.workflow.operators import WaitForMarketTime
from openbell.workflow.steps import StepContext


class MarketTimeStep(WaitForMarketTime):
    """Waits, deferred, for its market time, then runs :meth:`run` in the same task and returns its summary.

    A subclass names its step (:attr:`step`, the default task id) and overrides :meth:`run`; one whose
    start-up costs time also overrides :meth:`prepare`, called between the trigger and the market time.
    """

    step: ClassVar[str]

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("task_id", self.step)
        super().__init__(**kwargs)

    @abstractmethod
    def run(self, context: Any) -> dict[str, Any]:
        """The step itself, at its market time; returns the step's summary."""

    def execute(self, context: Any) -> dict[str, Any]:  # type: ignore[override]
        super().execute(context)  # defers, or returns at once when the time is past
        return self.run(context)

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> dict[str, Any]:  # type: ignore[override]
        super().execute_complete(context, event)
        return self.run(context)


class WaitForOpen(MarketTimeStep):
    """The run's opening time: refuses a malformed ``openbell_notify`` connection before the wait, then
    records that the time was reached."""

    step = "wait_for_open"

    def execute(self, context: Any) -> dict[str, Any]:
        from openbell.alerts.notify import check_channel

        self.log.info(check_channel())
        return super().execute(context)

    def run(self, context: Any) -> dict[str, Any]:
        return steps.wait_for_open(context)


class MiddayOptimize(MarketTimeStep):
    """The midday parameter search (:func:`~openbell.workflow.steps.midday_optimize`)."""

    step = "midday_optimize"

    def run(self, context: Any) -> dict[str, Any]:
        return steps.midday_optimize(context)


class EodLiquidate(MarketTimeStep):
    """The liquidation before the close (:func:`~openbell.workflow.steps.run_eod_liquidate`).

    Between the trigger and its market time it builds its step context and warms it (:meth:`warm`), so the
    connection lookups, the schema check and the broker's first connection cost no market time after it.
    Started when its time is already past, it builds the context then.
    """

    step = "eod_liquidate"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._ready: StepContext | None = None

    def warm(self, ctx: StepContext) -> None:
        """The start-up work, done before the market time."""
        steps.prepare_liquidation(ctx)

    def liquidate(self, ctx: StepContext) -> dict[str, Any]:
        """The liquidation on ``ctx``, at the market time."""
        return steps.run_eod_liquidate(ctx)

    def prepare(self, context: Any) -> None:
        ctx = steps.from_airflow(context)
        self.warm(ctx)
        self._ready = ctx

    def run(self, context: Any) -> dict[str, Any]:
        ctx = self._ready if self._ready is not None else steps.from_airflow(context)
        self._ready = None
        return self.liquidate(ctx)
