"""The live loop's side of the risk state: restored at the start, followed as stored, the loss stop tripped and
ended flat, the session reduced after the strategy's failures in a row, each change reported, stored and alerted
(:class:`RiskLink`). The state itself is the :class:`~openbell.risk.owner.RiskOwner`'s."""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import Engine

from openbell.alerts.notify import Level, alert
from openbell.clock import cached_now
from openbell.risk.gate import SendGate
from openbell.risk.owner import RiskChange, RiskOwner
from openbell.risk.state import RiskCause
from openbell.store.sessions import RiskRecord, set_risk
from openbell.trading.alerting import et_minute
from openbell.trading.context import LoopContext

log = logging.getLogger(__name__)


class RiskLink:
    """One attempt's risk state in the loop: ``risk`` owns it, ``send_gate`` is told of a restored one, the
    changes are reported in the attempt's report and its own (the loss stop's, the strategy's failures') stored in
    ``engine``."""

    def __init__(self, ctx: LoopContext, risk: RiskOwner, send_gate: SendGate, engine: Engine) -> None:
        self._ctx = ctx
        self.d = ctx.d
        self.report = ctx.report
        self.risk = risk
        self.gate = risk.gate
        self._send_gate = send_gate
        self.engine = engine
        risk.listen(self.changed)

    def restore(self, record: RiskRecord) -> None:
        """An earlier attempt's loss stop or an operator's halt holds for this attempt too, and so does the
        extra loss budget resumes granted today (the loss limit still counts from the stored open equity).
        A session the loss stop set REDUCING keeps closing every position until flat, then HALTED."""
        reason = record.reason if record.loss_stopped else f"{record.reason} (by {record.by})"
        self.risk.restore(record.state, record.cause, reason, record.extra_loss)
        self.report.risk_state = str(self.risk.state)
        self._send_gate.refresh()  # a restored HALTED closes the gate in the order workers too

    def changed(self, change: RiskChange) -> None:
        """Every change of the risk state in force: logged and reported."""
        log.warning("session %s risk state -> %s (%s: %s)", self.d, change.state, change.cause, change.reason)
        self.report.risk_state = str(change.state)
        self.report.risk_changes.append(change.as_dict())

    def follow(self, state: str, cause: str | None, extra_loss: float) -> None:
        """On the loop: the stored risk state (and the extra loss budget stored with it) in force."""
        self.risk.follow(state, cause, extra_loss, cached_now(self._ctx.clock))

    def broker_equity(self, equity: float) -> None:
        """The broker's own equity after a sync: past the loss limit (plus the extra loss budget resumes
        granted), the next decision stops the day."""
        gate = self.gate
        if not gate.stopped and gate.breached(equity):
            start = gate.day_start_equity or 0.0
            extra = f" plus {gate.extra_loss:.2f} extra loss granted" if gate.extra_loss else ""
            gate.halt(f"daily loss limit{extra}: the broker's equity {equity:.2f} vs {start:.2f} at the open")

    def loss_stop(self, reason: str) -> None:
        """The risk gate is stopped (the decision that finds it so while no loss stop holds says so, once): the
        loss stop trips, REDUCING with every universe position closed, minute after minute, until the broker
        reports them closed (:meth:`synced`), then HALTED; stored for every later attempt, alerted."""
        at = cached_now(self._ctx.clock)
        if self.risk.trip(reason, at) is None:
            return  # tripped already, or HALTED
        log.error("session %s: %s; closing every position before halting", self.d, reason)
        self.report.loss_stop = reason
        self._ctx.threads.pool.submit(self.store_halt, reason, at)

    def strategy_failed(self, reason: str) -> None:
        """The strategy failed too many minutes in a row (the guard says so after each failure from then on): an
        ACTIVE session goes REDUCING, positions kept, only orders that shrink one leave; stored for every later
        attempt and alerted, once. Nothing when the session is not ACTIVE."""
        at = cached_now(self._ctx.clock)
        if self.risk.strategy_failed(reason, at) is None:
            return
        log.error("session %s: %s; REDUCING: positions kept, only orders that shrink one leave", self.d, reason)
        self.report.strategy_reduced = reason
        self._ctx.threads.pool.submit(self.store_strategy_failed, reason, at)

    def synced(self, positions: dict[str, float]) -> None:
        """On the loop, after a broker sync applied whole (no order working): a loss stop whose closes the
        broker now shows done halts the session."""
        if not self.risk.flattening or any(abs(positions.get(s, 0.0)) > 1e-9 for s in self._ctx.universe):
            return
        at = cached_now(self._ctx.clock)
        change = self.risk.flat(at)
        if change is not None:
            log.error("session %s: loss stop flat at %s: HALTED", self.d, at.isoformat())
            self._ctx.threads.pool.submit(self.store, "HALTED", change.reason, at)

    def store(self, state: str, reason: str, at: datetime, cause: RiskCause = RiskCause.LOSS_STOP) -> None:
        """On a helper thread: this attempt's own state stored (by ``openbell``, with ``cause``) for every later
        attempt."""
        try:
            set_risk(self.engine, self.d, state, reason, "openbell", at=at, cause=str(cause))
        except Exception:
            log.exception("storing the risk state %s failed; this attempt keeps it", state)

    def store_halt(self, reason: str, at: datetime) -> None:
        """The loss stop stored as REDUCING and alerted, once per loss stop (keyed by the market minute it
        tripped at, so one after a resume alerts too)."""
        self.store("REDUCING", reason, at)
        alert("loss_stop", at.isoformat(timespec="minutes"),
              f"openbell {self.d}: loss stop at {et_minute(at)}, trading stopped: closing every position, then "
              "HALTED", reason,
              session_date=self.d, engine=self.engine, level=Level.FAILURE)

    def store_strategy_failed(self, reason: str, at: datetime) -> None:
        """The strategy's failures stored as REDUCING (cause ``strategy_failed``) and alerted, once per move (keyed
        by the market minute it happened at), with what the operator can do."""
        self.store("REDUCING", reason, at, RiskCause.STRATEGY_FAILED)
        alert("strategy_failed", at.isoformat(timespec="minutes"),
              f"openbell {self.d}: the strategy kept failing, REDUCING since {et_minute(at)}",
              f"{reason}.\n"
              "Each failed minute was skipped and every position kept. From now on only orders that shrink a "
              "position leave (the strategy is still asked every minute); the end-of-day liquidation closes what "
              "is held.\n"
              "To trade normally again once the cause is fixed (the first failure of each kind is in the "
              "live_trading task's log; a new attempt of that task loads the strategy's code anew), trigger "
              "trading_control with action resume (no extra loss budget needed); to close every position now, "
              "action flatten.",
              session_date=self.d, engine=self.engine, level=Level.FAILURE)
