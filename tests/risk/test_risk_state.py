"""The risk state's transitions and its live owner, in memory: who may move it where, and what follows."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from openbell.risk.owner import RiskChange, RiskOwner
from openbell.risk.state import MOVES, RiskCause, RiskMoveRefused, RiskState, check_move, risk_state
from openbell.strategy import RiskGate, RiskLimits

A, R, H = RiskState.ACTIVE, RiskState.REDUCING, RiskState.HALTED
OP, LOSS, STRAT = RiskCause.OPERATOR, RiskCause.LOSS_STOP, RiskCause.STRATEGY_FAILED
AT = datetime(2025, 11, 20, 19, 0, tzinfo=UTC)


def owner() -> tuple[RiskOwner, list[RiskChange]]:
    risk = RiskOwner(RiskGate(RiskLimits(daily_loss_limit=0.03)))
    changes: list[RiskChange] = []
    risk.listen(changes.append)
    return risk, changes


def test_risk_state_parses_any_case_and_names_the_states_when_refused() -> None:
    assert risk_state("halted") is H
    for bad in ("PAUSED", "", None, 3):
        with pytest.raises(ValueError, match="ACTIVE, REDUCING, HALTED"):
            risk_state(bad)


def test_only_the_operator_resumes_and_nobody_moves_halted_to_reducing() -> None:
    assert all(by is OP for (_, to), causes in MOVES.items() if to is A for by in causes)
    for by in RiskCause:
        with pytest.raises(RiskMoveRefused, match="flatten, or resume first"):
            check_move(H, R, by)
    with pytest.raises(RiskMoveRefused, match="only operator may"):
        check_move(R, A, LOSS)
    with pytest.raises(RiskMoveRefused):
        check_move(A, H, LOSS)  # the loss stop closes first (REDUCING), then HALTED


def test_the_loss_stops_cause_survives_an_operators_halt_or_flatten_until_a_resume() -> None:
    assert check_move(R, R, OP, LOSS) is LOSS
    assert check_move(R, H, OP, LOSS) is LOSS
    assert check_move(H, A, OP, LOSS) is OP
    assert check_move(A, R, OP, None) is OP


def test_a_loss_stop_reduces_then_halts_once_flat_and_trips_only_once() -> None:
    risk, changes = owner()
    assert risk.flat(AT) is None  # nothing to finish
    trip = risk.trip("daily loss 4% exceeds limit 3%", AT)
    assert trip is not None and (risk.state, risk.cause, risk.flattening) == (R, LOSS, True)
    assert risk.gate.stopped  # every target 0 from here on
    assert risk.trip("again", AT) is None
    done = risk.flat(AT)
    assert done is not None and (risk.state, risk.flattening, risk.loss_stopped) == (H, False, True)
    assert [c.as_dict() for c in changes] == [
        {"state": "REDUCING", "market_time": AT.isoformat(), "cause": "loss_stop"},
        {"state": "HALTED", "market_time": AT.isoformat(), "cause": "loss_stop"},
    ]
    assert risk.trip("a halted session does not trip", AT) is None


def test_the_stored_state_is_followed_and_its_own_echo_changes_nothing() -> None:
    risk, changes = owner()
    risk.trip("loss", AT)
    risk.flat(AT)
    assert risk.follow("REDUCING", "loss_stop", 0.0, AT) is None  # a late read of its own REDUCING
    assert risk.follow("HALTED", "loss_stop", 0.0, AT) is None  # its own HALTED written back
    assert len(changes) == 2
    resumed = risk.follow("ACTIVE", "operator", 1500.0, AT)
    assert resumed is not None and risk.state is A and not risk.gate.stopped and risk.gate.extra_loss == 1500.0
    halted = risk.follow("HALTED", "operator", 1500.0, AT)
    assert halted is not None and risk.gate.stopped and risk.cause is OP


def test_an_operators_reducing_keeps_targets_and_a_loss_stop_takes_over_with_its_closes() -> None:
    risk, _ = owner()
    risk.follow("REDUCING", "operator", 0.0, AT)
    assert (risk.state, risk.flattening, risk.gate.stopped) == (R, False, False)
    assert risk.trip("loss", AT) is not None and risk.flattening


def test_a_restored_state_holds_without_a_change() -> None:
    risk, changes = owner()
    risk.restore("REDUCING", "loss_stop", "daily loss", 250.0)
    assert risk.flattening and risk.gate.stopped and risk.gate.extra_loss == 250.0 and changes == []
    halted, _ = owner()
    halted.restore("HALTED", "operator", "news (by ops)", 0.0)
    assert halted.gate.stopped and not halted.flattening
    active, _ = owner()
    active.restore("ACTIVE", None, "", 0.0)
    assert not active.gate.stopped


def test_the_strategys_failures_only_move_active_to_reducing_and_an_operator_resumes_it() -> None:
    assert {move for move, causes in MOVES.items() if STRAT in causes} == {(A, R)}
    assert check_move(A, R, STRAT) is STRAT
    for before, after in ((R, R), (R, H), (A, H), (R, A), (H, A), (A, A)):
        with pytest.raises(RiskMoveRefused):
            check_move(before, after, STRAT)
    assert check_move(R, A, OP, STRAT) is OP  # a plain resume, as after an operator's halt
    assert check_move(R, R, OP, STRAT) is OP  # an operator's halt takes it over
    assert check_move(R, H, OP, STRAT) is OP  # so does a flatten
    assert check_move(R, R, LOSS, STRAT) is LOSS  # and the loss stop, which closes every position


def test_the_strategys_failures_reduce_an_active_session_once_keeping_the_targets() -> None:
    risk, changes = owner()
    change = risk.strategy_failed("the strategy failed 5 minutes in a row", AT)
    assert change is not None and (risk.state, risk.cause) == (R, STRAT)
    assert not risk.flattening and not risk.loss_stopped and not risk.gate.stopped  # positions kept, not closed
    assert risk.strategy_failed("again", AT) is None
    assert risk.follow("REDUCING", "strategy_failed", 0.0, AT) is None  # its own state written back
    assert [c.as_dict() for c in changes] == [
        {"state": "REDUCING", "market_time": AT.isoformat(), "cause": "strategy_failed"}]
    resumed = risk.follow("ACTIVE", "operator", 0.0, AT)
    assert resumed is not None and (risk.state, risk.cause) == (A, OP)


def test_the_strategys_failures_leave_a_halt_a_loss_stop_or_a_flatten_as_they_are() -> None:
    halted, _ = owner()
    halted.follow("REDUCING", "operator", 0.0, AT)
    assert halted.strategy_failed("failing", AT) is None and halted.cause is OP
    stopped, _ = owner()
    stopped.trip("loss", AT)
    assert stopped.strategy_failed("failing", AT) is None and stopped.flattening
    flat, _ = owner()
    flat.follow("HALTED", "operator", 0.0, AT)
    assert flat.strategy_failed("failing", AT) is None and flat.state is H


def test_a_loss_stop_takes_over_the_strategys_reducing_and_closes_every_position() -> None:
    risk, changes = owner()
    risk.strategy_failed("failing", AT)
    assert not risk.stop_holds
    assert risk.trip("daily loss 4% exceeds limit 3%", AT) is not None
    assert (risk.state, risk.cause, risk.flattening, risk.gate.stopped) == (R, LOSS, True, True)
    assert risk.follow("REDUCING", "strategy_failed", 0.0, AT) is None  # a late read of the earlier state
    assert risk.flat(AT) is not None and (risk.state, risk.cause) == (H, LOSS)
    assert [c.cause for c in changes] == [STRAT, LOSS, LOSS]


def test_a_restored_reducing_of_the_strategys_failures_keeps_the_targets() -> None:
    risk, changes = owner()
    risk.restore("REDUCING", "strategy_failed", "the strategy failed 5 minutes in a row (by openbell)", 0.0)
    assert (risk.state, risk.cause, risk.flattening, risk.gate.stopped, changes) == (R, STRAT, False, False, [])
