"""The liquidation keeps to the close: its context is ready before its market time, its proof pass leaves
time to close an order that was in flight, and its retries are spaced in market time."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk import RetryDecision
from airflow.sdk.definitions.retry_policy import RetryAction
from sqlalchemy import Engine

from dates import HALF_DAY, at_et
from openbell.broker.flatten import PROOF_MARGIN, proof_time
from openbell.broker.liquidate import liquidate
from openbell.calendar import ET, session
from openbell.clock import clock_for
from openbell.params import RunParams
from openbell.ports import PositionReport
from openbell.sim.testing import SimProcess
from openbell.store.ledger import steps_for
from openbell.workflow import operators, steps
from openbell.workflow.operators import MarketTimeRetry, clock_speed
from openbell.workflow.steps import StepContext, prepare_liquidation
from openbell.workflow.timed import EodLiquidate


@pytest.mark.parametrize(
    ("now", "proof"),
    [
        ("12:58:00", "12:59:00"),  # a minute after the first pass
        ("12:58:50", "12:59:45"),  # but PROOF_MARGIN before the close at the latest
        ("12:59:50", "12:59:50"),  # and never before now
    ],
)
def test_the_proof_pass_leaves_time_before_the_close(now: str, proof: str) -> None:
    close = at_et("13:00", HALF_DAY)
    assert proof_time(at_et(now, HALF_DAY), close, margin=PROOF_MARGIN) == at_et(proof, HALF_DAY)


def test_a_retry_is_spaced_in_market_time() -> None:
    policy = MarketTimeRetry(market_seconds=5)
    assert policy.wall_delay(1.0) == timedelta(seconds=5)
    assert policy.wall_delay(120.0) == timedelta(seconds=5 / 120)
    assert MarketTimeRetry(5, min_seconds=1).wall_delay(600.0) == timedelta(seconds=1)
    with pytest.raises(ValueError, match="speed"):
        policy.wall_delay(0.0)
    with pytest.raises(ValueError):
        MarketTimeRetry(market_seconds=-1)
    again = MarketTimeRetry.deserialize(MarketTimeRetry(7, min_seconds=0.5, conn_id="x").serialize())
    assert (again.market_seconds, again.min_seconds, again.conn_id) == (7.0, 0.5, "x")


class _Clock:
    def __init__(self, speed: float, calls: list[str] | None = None) -> None:
        self.mapping = type("M", (), {"speed": speed})()
        self.calls = calls if calls is not None else []

    def now(self) -> datetime:
        return at_et("12:57", HALF_DAY)

    def sleep_until(self, t: datetime, lead_seconds: float = 0.0) -> None:
        self.calls.append(f"sleep until {t.astimezone(ET):%H:%M}")


def test_the_retry_policy_asks_the_market_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(operators, "AlpacaHook", lambda **_: type("H", (), {"get_conn": lambda self: None})())
    monkeypatch.setattr(operators, "clock_for", lambda _config: _Clock(120.0))
    decision = MarketTimeRetry(market_seconds=6).evaluate(RuntimeError("boom"), 1, 4)
    assert decision.retry_delay == timedelta(seconds=0.05) and "120x" in (decision.reason or "")

    def unreachable(_config: Any) -> Any:
        raise OSError("no connection")

    monkeypatch.setattr(operators, "clock_for", unreachable)
    assert MarketTimeRetry().evaluate(RuntimeError("boom"), 1, 4).retry_delay is None  # the task's own delay
    assert clock_speed(_Clock(3.0)) == 3.0


def test_the_liquidation_retries_until_the_close_and_not_after(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(operators, "AlpacaHook", lambda **_: type("H", (), {"get_conn": lambda self: None})())
    run = type("Run", (), {"logical_date": datetime(2025, 11, 28, 14, tzinfo=UTC), "run_after": None})()
    policy = MarketTimeRetry(market_seconds=5, until_close=True)

    def at(hhmm: str) -> RetryDecision:
        clock = _Clock(1.0)
        clock.now = lambda: at_et(hhmm, HALF_DAY)  # type: ignore[method-assign]
        monkeypatch.setattr(operators, "clock_for", lambda _config: clock)
        return policy.evaluate(RuntimeError("boom"), 2, 21, {"dag_run": run})

    assert at("12:59:58").action == RetryAction.RETRY and at("12:59:58").retry_delay == timedelta(seconds=5)
    late = at("13:00")  # the half day's close
    assert late.action == RetryAction.FAIL and "13:00 ET" in (late.reason or "")
    assert MarketTimeRetry(5).evaluate(RuntimeError("boom"), 2, 21, {"dag_run": run}).action == RetryAction.RETRY
    assert MarketTimeRetry.deserialize(policy.serialize()).until_close


def test_the_liquidation_is_prepared_before_its_market_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    ctx = object()
    monkeypatch.setattr(steps, "from_airflow", lambda context: ctx)
    monkeypatch.setattr(EodLiquidate, "warm", lambda self, c: calls.append(f"prepare {c is ctx}"))
    monkeypatch.setattr(EodLiquidate, "liquidate",
                        lambda self, c: calls.append(f"liquidate {c is ctx}") or {"ok": True})
    op = EodLiquidate(anchor="close", offset_minutes=-2)
    assert op.task_id == "eod_liquidate"
    monkeypatch.setattr(op, "_clock", lambda: _Clock(1.0, calls))
    assert op.execute_complete({}, {"target": at_et("12:58", HALF_DAY).isoformat()}) == {"ok": True}
    assert calls == ["prepare True", "sleep until 12:58", "liquidate True"]


def test_a_half_day_liquidation_is_flat_before_1300(engine: Engine, tmp_path: Path) -> None:
    s = session(HALF_DAY)
    assert s is not None and s.close == at_et("13:00", HALF_DAY)
    with SimProcess(date=HALF_DAY.isoformat(), speed=30, start="12:57", data_dir=tmp_path / "sim",
                    extra_args=["--seed-position", "TQQQ:40", "--seed-position", "SQQQ:-25"]) as sim:
        ctx = StepContext(session=s, params=RunParams(), run_id="scheduled__2025-11-28", attempt=1,
                          run_type="scheduled", config_factory=sim.config,
                          state_url=engine.url.render_as_string(hide_password=False))
        started = time.perf_counter()
        prepare_liquidation(ctx)
        prepared_in = time.perf_counter() - started
        clock_for(sim.config()).sleep_until(at_et("12:58", HALF_DAY))
        summary = steps.run_eod_liquidate(ctx)
        assert sim.config().trading_client().get_all_positions() == []
    assert prepared_in < 60  # wall seconds; spent before 12:58, not after it
    assert summary["flat"] is True and "late" not in summary
    started_at = datetime.fromisoformat(summary["started_at"]).astimezone(ET)
    finished = datetime.fromisoformat(summary["finished_at"]).astimezone(ET)
    assert at_et("12:58", HALF_DAY) <= started_at < at_et("12:58:20", HALF_DAY), started_at
    assert finished < at_et("13:00", HALF_DAY), finished
    [row] = steps_for(engine, HALF_DAY)
    assert (row["step"], row["status"]) == ("eod_liquidate", "success")


@pytest.mark.long
def test_a_liquidation_under_rest_errors_is_flat_before_the_close(engine: Engine, tmp_path: Path) -> None:
    """30% of REST calls answered 429 or 500 at 120x: retries back off in market time (a rehearsal's
    broker recovers speed times faster too), so the two market minutes before the close still suffice."""
    s = session(HALF_DAY)
    assert s is not None
    with SimProcess(date=HALF_DAY.isoformat(), speed=120, start="12:45", data_dir=tmp_path / "sim",
                    extra_args=["--seed-position", "TQQQ:40", "--seed-position", "SQQQ:-25",
                                "--seed-position", "SPY:10"]) as sim:
        ctx = StepContext(session=s, params=RunParams(), run_id="scheduled__2025-11-28", attempt=1,
                          run_type="scheduled", config_factory=sim.config,
                          state_url=engine.url.render_as_string(hide_password=False))
        prepare_liquidation(ctx)
        sim.set_faults(rest_error_rate=0.3)
        clock_for(sim.config()).sleep_until(at_et("12:58", HALF_DAY))
        summary = steps.run_eod_liquidate(ctx)
        counters = sim.faults()["counters"]
        sim.set_faults(rest_error_rate=0.0)
        assert sim.config().trading_client().get_all_positions() == []
    assert counters["rest_429"] + counters["rest_500"] > 0
    assert summary["flat"] is True
    assert datetime.fromisoformat(summary["finished_at"]).astimezone(ET) < at_et("13:00", HALF_DAY)


class _Unreachable:
    """A broker whose listings fail (past their retries) for the first ``failures`` calls, then answer;
    its one position closes when asked."""

    def __init__(self, failures: int) -> None:
        self.failures, self.qty, self.closes = failures, {"TQQQ": 10.0}, 0

    def _flaky(self) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionError("broker unreachable")

    def cancel_all(self) -> int:
        self._flaky()
        return 0

    def close_all(self) -> tuple[list[Any], list[dict[str, Any]]]:
        self._flaky()
        self.qty.clear()
        return [], []

    def close_position(self, symbol: str) -> None:
        self.closes += 1
        self.qty.pop(symbol, None)

    def orders(self, scope: str) -> list[Any]:
        self._flaky()
        return []

    def positions(self) -> list[PositionReport]:
        self._flaky()
        return [PositionReport(s, q) for s, q in self.qty.items()]

    def describe(self, exc: BaseException) -> str:
        return str(exc)


class _TickingClock:
    """Market time that moves 5 s each time it is read."""

    def __init__(self, start: datetime) -> None:
        self.t = start

    def now(self) -> datetime:
        self.t += timedelta(seconds=5)
        return self.t

    def sleep_until(self, t: datetime, lead_seconds: float = 0.0) -> None:
        self.t = max(self.t, t)


def test_a_broker_out_of_reach_for_a_while_is_asked_again_until_the_close(engine: Engine) -> None:
    broker = _Unreachable(failures=4)  # cancel_all, then three listings
    report = liquidate(broker, engine, HALF_DAY, _TickingClock(at_et("12:58", HALF_DAY)),  # type: ignore[arg-type]
                       at_et("13:00", HALF_DAY), mark_phase=False)
    assert report.flat and report.unreachable == 4 and broker.closes == 1


def test_a_broker_out_of_reach_until_the_close_leaves_the_liquidation_not_flat(engine: Engine) -> None:
    broker = _Unreachable(failures=10_000)
    report = liquidate(broker, engine, HALF_DAY, _TickingClock(at_et("12:58", HALF_DAY)),  # type: ignore[arg-type]
                       at_et("13:00", HALF_DAY), mark_phase=False)
    assert not report.flat and report.unreachable > 2
    assert datetime.fromisoformat(report.finished_at) >= at_et("13:00", HALF_DAY)
