"""The timed steps' operators: each names its task, runs its own step at its market time, and only the
liquidation builds its context before that time."""

from __future__ import annotations

from datetime import datetime
from types import SimpleNamespace
from typing import Any

import pytest

from dates import HALF_DAY, at_et
from openbell.alerts import notify
from openbell.workflow import steps
from openbell.workflow.timed import EodLiquidate, MarketTimeStep, MiddayOptimize, WaitForOpen


class _PastClock:
    """A market clock already past the half day's open."""

    def now(self) -> datetime:
        return at_et("12:57", HALF_DAY)

    def sleep_until(self, t: datetime, lead_seconds: float = 0.0) -> None:
        raise AssertionError("a time already past is not waited for")


CONTEXT = {"dag_run": SimpleNamespace(logical_date=at_et("09:30", HALF_DAY), run_after=None)}


def test_the_base_is_no_step_of_its_own() -> None:
    with pytest.raises(TypeError, match="abstract"):
        MarketTimeStep(anchor="open")  # type: ignore[abstract]


@pytest.mark.parametrize(("cls", "function"), [(WaitForOpen, "wait_for_open"),
                                               (MiddayOptimize, "midday_optimize")])
def test_each_step_runs_its_own_function_under_its_own_task_id(
        cls: type[MarketTimeStep], function: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(steps, function, lambda context: {"ran": function, "context": context})
    op = cls(anchor="open")
    assert op.task_id == cls.step == function
    assert cls(task_id="other", anchor="open").task_id == "other"
    assert op.run(CONTEXT) == {"ran": function, "context": CONTEXT}


def test_wait_for_open_checks_the_alert_channel_before_the_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(notify, "check_channel", lambda: calls.append("channel") or "alerts off")
    monkeypatch.setattr(steps, "wait_for_open", lambda context: calls.append("step") or {"ok": True})
    op = WaitForOpen(anchor="open")
    monkeypatch.setattr(op, "_clock", _PastClock)
    assert op.execute(CONTEXT) == {"ok": True}
    assert calls == ["channel", "step"]


def test_a_liquidation_started_past_its_time_builds_its_context_then(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    ctx = object()
    monkeypatch.setattr(steps, "from_airflow", lambda context: calls.append("context") or ctx)
    monkeypatch.setattr(EodLiquidate, "warm", lambda self, c: calls.append("warm"))
    monkeypatch.setattr(EodLiquidate, "liquidate", lambda self, c: calls.append(f"liquidate {c is ctx}") or {})
    op = EodLiquidate(anchor="open")
    monkeypatch.setattr(op, "_clock", _PastClock)
    assert op.execute(CONTEXT) == {}
    assert calls == ["context", "liquidate True"]


def test_only_the_liquidation_prepares(monkeypatch: pytest.MonkeyPatch) -> None:
    def unexpected(context: Any) -> Any:
        raise AssertionError("no step context before the market time")

    monkeypatch.setattr(steps, "from_airflow", unexpected)
    for cls in (WaitForOpen, MiddayOptimize):
        cls(anchor="open").prepare(CONTEXT)
