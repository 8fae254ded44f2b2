"""How the stored risk state reaches the live loop's gate: a session stopped by the loss stop stays stopped on
every later attempt (REDUCING as well as HALTED), a resume unlatches the gate without granting a fresh daily
limit (the open's equity stays, only the extra loss budget granted is added), and the broker's equity is
checked against the same widened limit. The three TradingAttempt methods run on a stand-in of the session's
parts; the phase watch runs against a real Postgres."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import Engine

from dates import SESSION as DAY
from openbell.policy import OrderLimits
from openbell.risk.gate import SendGate
from openbell.risk.owner import RiskOwner
from openbell.store.sessions import RiskRecord, record_open_equity, set_phase, set_risk
from openbell.strategy import RiskGate, RiskLimits
from openbell.trading.live import TradingAttempt
from openbell.trading.phasewatch import PhaseWatch

OPEN_EQUITY = 100_000.0


class _Clock:
    def now(self) -> datetime:
        return datetime(2025, 11, 20, 17, 0, tzinfo=UTC)


def _live(*, state: str = "ACTIVE", extra_loss: float = 0.0, cause: str | None = None) -> Any:
    """The parts of a TradingAttempt the three methods touch, after ``prepare`` started the day at the open."""
    gate = RiskGate(RiskLimits(daily_loss_limit=0.03), day_start_equity=OPEN_EQUITY)
    risk = RiskOwner(gate)
    live = SimpleNamespace(
        d=DAY, clock=_Clock(), gate=gate, risk=risk, portfolio=SimpleNamespace(equity=lambda: 96_900.0),
        send_gate=SendGate(risk, OrderLimits(), trade_until=datetime(2025, 11, 20, 20, 58, tzinfo=UTC)),
        report=SimpleNamespace(risk_state=state, risk_changes=[], loss_stop=None),
        phase=SimpleNamespace(risk=state, risk_cause=cause, extra_loss=extra_loss),
    )
    live.risk.listen(lambda change: TradingAttempt._risk_changed(live, change))
    return live


@pytest.mark.parametrize("state", ["REDUCING", "HALTED"])
def test_a_retry_of_a_session_the_loss_stop_stopped_stays_stopped(state: str) -> None:
    live = _live()
    TradingAttempt._restore_risk(live, RiskRecord(state, "daily loss 3.1%", "openbell", open_equity=OPEN_EQUITY,
                                               cause="loss_stop"))
    assert live.gate.stopped and live.risk.loss_stopped  # targets 0; the stop is stored already
    assert live.risk.flattening == (state == "REDUCING")  # REDUCING: still closing every position
    assert "loss stop" in (live.gate.stop_reason or "")
    assert (live.risk.state, live.report.risk_state) == (state, state)
    assert live.gate.day_start_equity == OPEN_EQUITY


def test_an_operators_halt_is_restored_as_before() -> None:
    halted = _live()
    TradingAttempt._restore_risk(halted, RiskRecord("HALTED", "news", "alice", cause="operator"))
    assert halted.gate.stopped and halted.risk.state == "HALTED" and not halted.risk.loss_stopped
    reducing = _live()
    TradingAttempt._restore_risk(reducing, RiskRecord("REDUCING", "news", "alice", cause="operator"))
    assert not reducing.gate.stopped and reducing.risk.state == "REDUCING"  # the send gate reduces


def test_a_retry_after_a_resume_with_a_budget_keeps_the_budget_and_does_not_trip_at_once() -> None:
    live = _live()
    TradingAttempt._restore_risk(live, RiskRecord("ACTIVE", "reviewed", "alice", open_equity=OPEN_EQUITY,
                                               cause="operator", extra_loss=1_000.0))
    assert not live.gate.stopped and live.gate.extra_loss == 1_000.0
    TradingAttempt._on_broker_equity(live, 96_900.0)  # 3,100 lost <= 3,000 + 1,000
    assert not live.gate.stopped
    weights, _ = live.gate.apply({"ERX": 0.2}, equity=96_900.0)
    assert weights == {"ERX": 0.2}
    TradingAttempt._on_broker_equity(live, 95_900.0)  # 4,100 lost > 4,000
    assert live.gate.stopped and "1000.00 extra loss granted" in (live.gate.stop_reason or "")


def test_the_broker_equity_past_the_plain_limit_stops_a_session_without_a_budget() -> None:
    live = _live()
    TradingAttempt._on_broker_equity(live, 96_900.0)
    assert live.gate.stopped and "the broker's equity 96900.00 vs 100000.00 at the open" in live.gate.stop_reason


def test_a_resume_after_the_loss_stop_adds_the_budget_and_keeps_the_open_equity() -> None:
    live = _live(state="HALTED")
    live.gate.apply({"ERX": 0.2}, equity=96_900.0)  # the loss stop tripped
    assert live.gate.stopped
    assert live.risk.trip(live.gate.stop_reason, None) is not None and live.risk.flat(None) is not None
    live.phase.risk_cause, live.phase.extra_loss = "operator", 1_000.0
    TradingAttempt._apply_risk(live, "ACTIVE")
    assert not live.gate.stopped and not live.risk.loss_stopped
    assert live.gate.day_start_equity == OPEN_EQUITY and live.gate.extra_loss == 1_000.0
    assert live.risk.state == "ACTIVE" and live.report.risk_changes[-1] == {
        "state": "ACTIVE", "market_time": _Clock().now().isoformat(), "cause": "operator"}
    weights, notes = live.gate.apply({"ERX": 0.2}, equity=96_900.0)
    assert weights == {"ERX": 0.2} and notes == []


def test_a_plain_resume_no_longer_grants_a_fresh_daily_limit() -> None:
    live = _live(state="HALTED")
    TradingAttempt._restore_risk(live, RiskRecord("HALTED", "news", "alice", cause="operator"))
    live.phase.risk_cause = "operator"
    TradingAttempt._apply_risk(live, "ACTIVE")
    assert not live.gate.stopped and live.gate.day_start_equity == OPEN_EQUITY  # not moved to 96,900
    weights, notes = live.gate.apply({"ERX": 0.2}, equity=96_900.0)  # past the day's limit: stops again
    assert weights == {"ERX": 0.0} and live.gate.stopped and "daily loss" in notes[0]


def test_a_budget_stored_while_the_state_stays_reaches_the_gate() -> None:
    live = _live()
    live.phase.extra_loss = 750.0
    TradingAttempt._apply_risk(live, "ACTIVE")
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
