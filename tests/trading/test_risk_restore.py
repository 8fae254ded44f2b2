"""How the stored risk state reaches the live loop's gate: a session stopped by the loss stop stays stopped on
every later attempt (REDUCING as well as HALTED), a resume unlatches the gate without granting a fresh daily
limit (the open's equity stays, only the extra loss budget granted is added), and the broker's equity is
checked against the same widened limit. The loop's RiskLink runs in memory; the phase watch runs against a real
Postgres."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine

from dates import SESSION as DAY
from dates import the_session
from openbell.policy import OrderLimits
from openbell.risk.gate import SendGate
from openbell.risk.owner import RiskOwner
from openbell.store.sessions import RiskRecord, record_open_equity, set_phase, set_risk
from openbell.strategy import RiskGate, RiskLimits
from openbell.trading.attempt_report import AttemptReport
from openbell.trading.context import LoopContext
from openbell.trading.phasewatch import PhaseWatch
from openbell.trading.risklink import RiskLink

OPEN_EQUITY = 100_000.0


class _Clock:
    def now(self) -> datetime:
        return datetime(2025, 11, 20, 17, 0, tzinfo=UTC)


def _link() -> RiskLink:
    """The loop's risk link after ``prepare`` started the day at the open (no thread, recorder or database is
    reached by what these tests do)."""
    gate = RiskGate(RiskLimits(daily_loss_limit=0.03), day_start_equity=OPEN_EQUITY)
    risk = RiskOwner(gate)
    ctx = LoopContext(the_session(DAY), ("ERX",), _Clock(), None, None, AttemptReport(DAY.isoformat()))  # type: ignore[arg-type]
    gate_out = SendGate(risk, OrderLimits(), trade_until=datetime(2025, 11, 20, 20, 58, tzinfo=UTC))
    return RiskLink(ctx, risk, gate_out, engine=None)  # type: ignore[arg-type]


@pytest.mark.parametrize("state", ["REDUCING", "HALTED"])
def test_a_retry_of_a_session_the_loss_stop_stopped_stays_stopped(state: str) -> None:
    live = _link()
    live.restore(RiskRecord(state, "daily loss 3.1%", "openbell", open_equity=OPEN_EQUITY, cause="loss_stop"))
    assert live.gate.stopped and live.risk.loss_stopped  # targets 0; the stop is stored already
    assert live.risk.flattening == (state == "REDUCING")  # REDUCING: still closing every position
    assert "loss stop" in (live.gate.stop_reason or "")
    assert (live.risk.state, live.report.risk_state) == (state, state)
    assert live.gate.day_start_equity == OPEN_EQUITY


def test_an_operators_halt_is_restored_as_before() -> None:
    halted = _link()
    halted.restore(RiskRecord("HALTED", "news", "alice", cause="operator"))
    assert halted.gate.stopped and halted.risk.state == "HALTED" and not halted.risk.loss_stopped
    reducing = _link()
    reducing.restore(RiskRecord("REDUCING", "news", "alice", cause="operator"))
    assert not reducing.gate.stopped and reducing.risk.state == "REDUCING"  # the send gate reduces


def test_a_retry_after_a_resume_with_a_budget_keeps_the_budget_and_does_not_trip_at_once() -> None:
    live = _link()
    live.restore(RiskRecord("ACTIVE", "reviewed", "alice", open_equity=OPEN_EQUITY, cause="operator",
                            extra_loss=1_000.0))
    assert not live.gate.stopped and live.gate.extra_loss == 1_000.0
    live.broker_equity(96_900.0)  # 3,100 lost <= 3,000 + 1,000
    assert not live.gate.stopped
    weights, _ = live.gate.apply({"ERX": 0.2}, equity=96_900.0)
    assert weights == {"ERX": 0.2}
    live.broker_equity(95_900.0)  # 4,100 lost > 4,000
    assert live.gate.stopped and "1000.00 extra loss granted" in (live.gate.stop_reason or "")


def test_the_broker_equity_past_the_plain_limit_stops_a_session_without_a_budget() -> None:
    live = _link()
    live.broker_equity(96_900.0)
    assert live.gate.stopped and "the broker's equity 96900.00 vs 100000.00 at the open" in live.gate.stop_reason


def test_a_resume_after_the_loss_stop_adds_the_budget_and_keeps_the_open_equity() -> None:
    live = _link()
    live.gate.apply({"ERX": 0.2}, equity=96_900.0)  # the loss stop tripped
    assert live.gate.stopped
    assert live.risk.trip(live.gate.stop_reason, None) is not None and live.risk.flat(None) is not None
    live.follow("ACTIVE", "operator", 1_000.0)
    assert not live.gate.stopped and not live.risk.loss_stopped
    assert live.gate.day_start_equity == OPEN_EQUITY and live.gate.extra_loss == 1_000.0
    assert live.risk.state == "ACTIVE" and live.report.risk_changes[-1] == {
        "state": "ACTIVE", "market_time": _Clock().now().isoformat(), "cause": "operator"}
    weights, notes = live.gate.apply({"ERX": 0.2}, equity=96_900.0)
    assert weights == {"ERX": 0.2} and notes == []


def test_a_plain_resume_no_longer_grants_a_fresh_daily_limit() -> None:
    live = _link()
    live.restore(RiskRecord("HALTED", "news", "alice", cause="operator"))
    live.follow("ACTIVE", "operator", 0.0)
    assert not live.gate.stopped and live.gate.day_start_equity == OPEN_EQUITY  # not moved to 96,900
    weights, notes = live.gate.apply({"ERX": 0.2}, equity=96_900.0)  # past the day's limit: stops again
    assert weights == {"ERX": 0.0} and live.gate.stopped and "daily loss" in notes[0]


def test_a_budget_stored_while_the_state_stays_reaches_the_gate() -> None:
    live = _link()
    live.follow("ACTIVE", None, 750.0)
    assert live.gate.extra_loss == 750.0 and not live.gate.stopped


def test_the_phase_watch_follows_the_cause_and_the_extra_loss(engine: Engine) -> None:
    seen: list[tuple[str, str | None, float]] = []
    set_phase(engine, DAY, "trading")
    record_open_equity(engine, DAY, OPEN_EQUITY)
    watch = PhaseWatch(engine, DAY, on_risk=lambda state: seen.append((state, watch.risk_cause, watch.extra_loss)),
                       poll_seconds=0.05)
    watch.start()
    try:
        assert watch.connected.wait(10)
        set_risk(engine, DAY, "REDUCING", "daily loss 3.1%", "openbell", cause="loss_stop")
        set_risk(engine, DAY, "ACTIVE", "reviewed", "alice", cause="operator", extra_loss=1_000.0)
        give_up = time.monotonic() + 10
        while len(seen) < 2 and time.monotonic() < give_up:
            time.sleep(0.02)
    finally:
        watch.stop()
    assert seen == [("REDUCING", "loss_stop", 0.0), ("ACTIVE", "operator", 1_000.0)]
