"""The session's risk state and its transitions: who may move it where, in one table.

``ACTIVE`` trades; ``REDUCING`` lets only orders that shrink a position leave; ``HALTED`` lets nothing leave.
Three causes move it: the ``operator`` (``trading_control``: halt, flatten, resume), the daily ``loss_stop``
(ACTIVE or any REDUCING -> REDUCING while it closes every position -> HALTED once the broker shows them closed)
and ``strategy_failed`` (the strategy failed too many minutes in a row: ACTIVE -> REDUCING, what is held is
kept). A session the loss stop stopped keeps that cause through an operator's halt or flatten; only a resume
lifts it (with an extra loss budget, checked by the control step). A session the strategy's failures reduced is
resumed like one an operator halted. A leaf: it imports nothing of openbell, so the store, the workflow and the
live loop share it.
"""

from __future__ import annotations

from enum import StrEnum


class RiskState(StrEnum):
    """ACTIVE, REDUCING (only orders shrinking a position leave) or HALTED (no order leaves)."""

    ACTIVE = "ACTIVE"
    REDUCING = "REDUCING"
    HALTED = "HALTED"


class RiskCause(StrEnum):
    """Who moved the state: an operator through ``trading_control``, openbell's daily loss stop, or openbell after
    the strategy failed too many minutes in a row."""

    LOSS_STOP = "loss_stop"
    OPERATOR = "operator"
    STRATEGY_FAILED = "strategy_failed"


RISK_STATES = tuple(s.value for s in RiskState)
RISK_CAUSES = tuple(c.value for c in RiskCause)
LEVELS = {RiskState.ACTIVE: 0, RiskState.REDUCING: 1, RiskState.HALTED: 2}  # the metrics' gauge

_OP, _LOSS, _STRAT = RiskCause.OPERATOR, RiskCause.LOSS_STOP, RiskCause.STRATEGY_FAILED
_A, _R, _H = RiskState.ACTIVE, RiskState.REDUCING, RiskState.HALTED
# (from, to) -> the causes that may make that move. A move to the same state re-asserts it with a new reason.
MOVES: dict[tuple[RiskState, RiskState], frozenset[RiskCause]] = {
    (_A, _A): frozenset({_OP}),  # resume of an active session: recorded, nothing changes
    (_A, _R): frozenset({_OP, _LOSS, _STRAT}),  # halt; the loss stop trips; the strategy failed N minutes in a row
    (_A, _H): frozenset({_OP}),  # flatten
    (_R, _R): frozenset({_OP, _LOSS}),  # halt again; the loss stop trips during a halt or the strategy's REDUCING
    (_R, _H): frozenset({_OP, _LOSS}),  # flatten; the loss stop's closes are done
    (_R, _A): frozenset({_OP}),  # resume
    (_H, _H): frozenset({_OP}),  # flatten again
    (_H, _A): frozenset({_OP}),  # resume
    # HALTED -> REDUCING by no one: a halt would let reducing orders leave again (flatten, or resume first)
}


class RiskMoveRefused(ValueError):
    """A move the table does not allow; the message says why."""


def risk_state(value: object) -> RiskState:
    """``value`` as a :class:`RiskState` (any case); ValueError naming the allowed values otherwise."""
    try:
        return RiskState(str(value).upper())
    except ValueError:
        raise ValueError(f"risk state must be one of {', '.join(RISK_STATES)}, got {value!r}") from None


def check_move(before: RiskState, after: RiskState, by: RiskCause,
               before_cause: RiskCause | None = None) -> RiskCause:
    """The cause stored with the move ``before`` -> ``after`` made by ``by``, or :class:`RiskMoveRefused`.

    The loss stop's cause survives an operator's halt or flatten (only a resume lifts it), so that a later
    resume still needs an extra loss budget.
    """
    allowed = MOVES.get((before, after), frozenset())
    if by not in allowed:
        why = ("a halt would let reducing orders leave again: flatten, or resume first"
               if (before, after) == (_H, _R) else f"only {', '.join(sorted(allowed)) or 'no one'} may")
        raise RiskMoveRefused(f"the risk state cannot move {before} -> {after} by {by}: {why}")
    if before_cause is _LOSS and before is not _A and after is not _A:
        return _LOSS
    return by
