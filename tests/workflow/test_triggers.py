"""MarketTimeTrigger and WaitForMarketTime against a loopback simulator clock endpoint."""

from __future__ import annotations

import asyncio
import importlib
import json
import time
from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.sdk.exceptions import TaskDeferred
from airflow.triggers.base import TriggerEvent

from clock_endpoint import ClockEndpoint
from dates import et
from openbell import calendar as cal
from openbell import clock as clock_mod
from openbell.clock import SimClock, WallClock
from openbell.workflow.operators import WaitForMarketTime, target_time
from openbell.workflow.triggers import MarketTimeTrigger

T0 = datetime(2025, 11, 26, 14, 25, tzinfo=UTC)  # Wednesday 09:25 ET


def first_event(trigger: MarketTimeTrigger, timeout: float = 20.0) -> tuple[TriggerEvent, float]:
    """Run the trigger in an event loop until its first event; returns it and the wall time it came."""

    async def go() -> tuple[TriggerEvent, float]:
        async def first() -> TriggerEvent:
            async for event in trigger.run():
                return event
            raise AssertionError("trigger ended without an event")

        event = await asyncio.wait_for(first(), timeout)
        return event, time.time()

    return asyncio.run(go())


def sim_spec(endpoint: ClockEndpoint, refresh: float = 0.2) -> dict[str, Any]:
    return SimClock(endpoint.url, refresh_seconds=refresh).spec()


# -- MarketTimeTrigger ---------------------------------------------------------------------------


def test_serialize_round_trip(endpoint: ClockEndpoint) -> None:
    trigger = MarketTimeTrigger(target="2025-11-26T09:30:00-05:00", clock=sim_spec(endpoint), lead_seconds=3)
    path, kwargs = trigger.serialize()
    assert path == "openbell.workflow.triggers.MarketTimeTrigger"
    assert json.loads(json.dumps(kwargs)) == kwargs
    module, name = path.rsplit(".", 1)
    again = getattr(importlib.import_module(module), name)(**kwargs)
    assert again.serialize() == (path, kwargs)
    assert kwargs["lead_seconds"] == 3.0
    assert datetime.fromisoformat(kwargs["target"]) == T0 + timedelta(minutes=5)


def test_fires_at_the_market_time_under_a_fast_simulator(endpoint: ClockEndpoint) -> None:
    endpoint.anchor(T0, speed=600.0)
    target = T0 + timedelta(minutes=5)  # 0.5 wall seconds away at 600x
    event, fired_wall = first_event(MarketTimeTrigger(target=target.isoformat(), clock=sim_spec(endpoint)))
    assert event.payload["target"] == target.isoformat()
    assert datetime.fromisoformat(event.payload["market_time"]) >= target
    mapping = SimClock(endpoint.url).refresh()
    assert fired_wall >= mapping.wall_at(target)


def test_lead_seconds_fire_early_by_wall_time(endpoint: ClockEndpoint) -> None:
    endpoint.anchor(T0, speed=600.0)
    target = T0 + timedelta(minutes=25)  # 2.5 wall seconds away
    trigger = MarketTimeTrigger(target=target.isoformat(), clock=sim_spec(endpoint), lead_seconds=2.0)
    event, _ = first_event(trigger)
    fired_market = datetime.fromisoformat(event.payload["market_time"])
    assert target - timedelta(seconds=2.0 * 600) <= fired_market < target


def test_keeps_retrying_an_unreachable_clock(
    endpoint: ClockEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(clock_mod, "RETRY_SECONDS", 0.05)
    endpoint.anchor(T0, speed=600.0)
    endpoint.fail_next = 4
    target = T0 + timedelta(minutes=1)
    event, _ = first_event(MarketTimeTrigger(target=target.isoformat(), clock=sim_spec(endpoint)))
    assert datetime.fromisoformat(event.payload["market_time"]) >= target
    assert endpoint.requests >= 5


def test_wall_clock_target_in_the_past_fires_at_once() -> None:
    event, _ = first_event(MarketTimeTrigger(target=T0.isoformat(), clock=WallClock().spec()), timeout=5)
    assert event.payload["target"] == T0.isoformat()


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="UTC offset"):
        MarketTimeTrigger(target="2025-11-26T09:30:00", clock={"kind": "wall"})
    with pytest.raises(ValueError, match="lead_seconds"):
        MarketTimeTrigger(target=T0.isoformat(), clock={"kind": "wall"}, lead_seconds=-1)
    with pytest.raises(ValueError, match="unknown clock kind"):
        MarketTimeTrigger(target=T0.isoformat(), clock={"kind": "nope"})


# -- target_time and WaitForMarketTime -----------------------------------------------------------


@pytest.mark.parametrize(
    ("day", "anchor", "offset", "expected_et"),
    [
        (date(2025, 11, 26), "open", 0, (9, 30)),
        (date(2025, 11, 26), "midday", 0, (14, 30)),
        (date(2025, 11, 26), "close", -2, (15, 58)),
        (date(2025, 11, 28), "open", 0, (9, 30)),
        (date(2025, 11, 28), "midday", 0, (11, 30)),  # 13:00 half day: close - 90 min
        (date(2025, 11, 28), "close", -2, (12, 58)),
        (date(2025, 3, 10), "close", -2, (15, 58)),  # first EDT session
        (date(2025, 11, 26), "midday", 5, (14, 35)),
    ],
)
def test_target_time(day: date, anchor: Any, offset: float, expected_et: tuple[int, int]) -> None:
    s = cal.session(day)
    assert s is not None
    got = target_time(s, anchor, offset)
    assert got == et(day, *expected_et)
    assert got.tzinfo == UTC


def test_operator_refuses_bad_anchor_and_lead() -> None:
    with pytest.raises(ValueError, match="anchor"):
        WaitForMarketTime(task_id="w", anchor="noon")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="lead_seconds"):
        WaitForMarketTime(task_id="w", anchor="open", lead_seconds=-5)


@pytest.fixture
def alpaca_conn(endpoint: ClockEndpoint, monkeypatch: pytest.MonkeyPatch) -> ClockEndpoint:
    """The Airflow connection alpaca_default pointing at the loopback simulator endpoint."""
    conn = {"conn_type": "generic", "login": "test-key-id", "password": "test-secret-key",
            "extra": {"simulator_url": endpoint.base_url}}
    monkeypatch.setenv("AIRFLOW_CONN_ALPACA_DEFAULT", json.dumps(conn))
    return endpoint


def context_for(logical_date: datetime | None, run_after: datetime) -> dict[str, Any]:
    return {"dag_run": SimpleNamespace(logical_date=logical_date, run_after=run_after)}


def test_operator_defers_then_finishes_at_the_target(alpaca_conn: ClockEndpoint) -> None:
    alpaca_conn.anchor(T0, speed=600.0)  # 09:25 ET: the open is 5 market minutes (0.5 s) away
    session = cal.session(date(2025, 11, 26))
    assert session is not None
    op = WaitForMarketTime(task_id="wait_for_open", anchor="open", lead_seconds=0.3)
    ctx = context_for(session.open, session.open - timedelta(minutes=30))
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(ctx)
    assert deferred.value.method_name == "execute_complete"
    trigger = deferred.value.trigger
    assert isinstance(trigger, MarketTimeTrigger)
    assert datetime.fromisoformat(trigger.target) == session.open
    assert trigger.clock["clock_url"] == alpaca_conn.url
    assert trigger.lead_seconds == 0.3
    assert "test-secret-key" not in json.dumps(trigger.serialize()[1])

    event, _ = first_event(trigger)
    result = op.execute_complete(ctx, event.payload)
    assert datetime.fromisoformat(result) == session.open
    assert SimClock(alpaca_conn.url).now() >= session.open


def test_operator_returns_at_once_when_already_past(alpaca_conn: ClockEndpoint) -> None:
    alpaca_conn.anchor(et(date(2025, 11, 28), 13, 5), speed=60.0)  # after the half day's close
    op = WaitForMarketTime(task_id="wait_liquidate", anchor="close", offset_minutes=-2)
    # a manual run without a logical date, triggered on Thanksgiving: it is for Friday's half day
    result = op.execute(context_for(None, et(date(2025, 11, 27), 20)))
    assert datetime.fromisoformat(result) == et(date(2025, 11, 28), 12, 58)
