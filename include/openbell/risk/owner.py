"""The live loop's one owner of the risk state: every change goes through :class:`RiskOwner`, every part reads it.

It keeps the state in force for one attempt, moves it only as :mod:`openbell.risk.state` allows, keeps the
strategy's :class:`~openbell.strategy.RiskGate` in step (targets 0 while HALTED or loss-stopped, the extra
loss budget a resume granted), and tells its listeners of every change (the report, the send gate). Storing a
change and alerting on it is the caller's: the owner does no I/O.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from openbell.risk.state import RiskCause, RiskMoveRefused, RiskState, check_move, risk_state
from openbell.strategy import RiskGate

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RiskChange:
    """One change of the state in force: to ``state`` for ``cause``, at market time ``at``."""

    state: RiskState
    cause: RiskCause | None
    at: datetime | None
    reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"state": str(self.state),
                               "market_time": self.at.isoformat() if self.at is not None else None}
        return {**out, "cause": str(self.cause)} if self.cause is not None else out


class RiskOwner:
    """The risk state of one attempt. ``gate`` is the strategy's risk gate it keeps in step."""

    def __init__(self, gate: RiskGate) -> None:
        self.gate = gate
        self.state = RiskState.ACTIVE
        self.cause: RiskCause | None = None
        self.reason = ""
        self._listeners: list[Callable[[RiskChange], None]] = []

    @property
    def flattening(self) -> bool:
        """The loss stop tripped and its closes are not all done: every decision closes every position."""
        return self.state is RiskState.REDUCING and self.cause is RiskCause.LOSS_STOP

    @property
    def loss_stopped(self) -> bool:
        """The loss stop set the state and no resume has lifted it."""
        return self.cause is RiskCause.LOSS_STOP and self.state is not RiskState.ACTIVE

    @property
    def stop_holds(self) -> bool:
        """A trip of the loss stop would change nothing: it holds already (REDUCING or HALTED), or HALTED."""
        return self.loss_stopped or self.state is RiskState.HALTED

    def listen(self, listener: Callable[[RiskChange], None]) -> None:
        """Call ``listener`` with every change from now on (on the thread that made it)."""
        self._listeners.append(listener)

    def restore(self, state: str, cause: str | None, reason: str, extra_loss: float) -> None:
        """The state an earlier attempt or an operator stored, in force from the start of this attempt (no
        change is reported: nothing changed). A loss-stopped or HALTED session keeps every target 0."""
        self.state, self.cause, self.reason = risk_state(state), _cause(cause), reason
        self.gate.extra_loss = extra_loss
        if self.loss_stopped:
            self.gate.halt(f"restored as {self.state} by the loss stop: {reason}")
        elif self.state is RiskState.HALTED:
            self.gate.halt(f"restored as HALTED: {reason}")

    def follow(self, state: str, cause: str | None, extra_loss: float, at: datetime | None) -> RiskChange | None:
        """The stored state changed (an operator, or this attempt's own change written back): in force now,
        with the day's extra loss budget as stored. A stored state this attempt has already moved past (the
        loss stop's REDUCING read after its HALTED) is ignored."""
        self.gate.extra_loss = extra_loss
        to, by = risk_state(state), _cause(cause) or RiskCause.OPERATOR
        if to is self.state and (by is self.cause or self.cause is RiskCause.LOSS_STOP):
            return None
        try:
            check_move(self.state, to, by, self.cause)
        except RiskMoveRefused as exc:
            log.warning("stored risk state %s (%s) not followed: %s", to, by, exc)
            return None
        if to is RiskState.HALTED:
            self.gate.halt("HALTED by the loss stop" if by is RiskCause.LOSS_STOP else "HALTED by the operator")
        elif to is RiskState.ACTIVE and self.gate.stopped:
            # a resume trades again; the loss limit still counts from the open, plus the extra budget granted
            self.gate.resume(extra_loss)
        return self._move(to, by, at, f"stored by {by}")

    def trip(self, reason: str, at: datetime | None) -> RiskChange | None:
        """The daily loss stop tripped: REDUCING while every position is closed. None when the state already
        holds it (:attr:`stop_holds`)."""
        if self.stop_holds:
            return None
        self.gate.halt(reason)
        return self._move(RiskState.REDUCING, RiskCause.LOSS_STOP, at, reason)

    def strategy_failed(self, reason: str, at: datetime | None) -> RiskChange | None:
        """The strategy failed too many minutes in a row: an ACTIVE session goes REDUCING (only orders that shrink
        a position leave; what is held is kept). None when the session is not ACTIVE: a halt, the loss stop or a
        flatten already holds at least as much."""
        if self.state is not RiskState.ACTIVE:
            return None
        return self._move(RiskState.REDUCING, RiskCause.STRATEGY_FAILED, at, reason)

    def flat(self, at: datetime | None) -> RiskChange | None:
        """The broker shows every position closed: a loss stop's REDUCING ends HALTED (None otherwise)."""
        if not self.flattening:
            return None
        return self._move(RiskState.HALTED, RiskCause.LOSS_STOP, at,
                          f"{self.reason or 'loss stop'}; the broker reports every position closed")

    def _move(self, to: RiskState, by: RiskCause, at: datetime | None, reason: str) -> RiskChange:
        self.cause = check_move(self.state, to, by, self.cause)
        self.state, self.reason = to, reason
        change = RiskChange(to, by, at, reason)
        for listener in self._listeners:
            listener(change)
        return change


def _cause(value: str | None) -> RiskCause | None:
    return RiskCause(value) if value else None
