"""An order a worker answers ``not_sent`` is counted by why: the trading cut-off came first, or the send gate
closed while the worker still held it. In memory: the dispatcher with stand-ins of the recorder, no simulator,
no Postgres, no order worker."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from dates import SESSION, the_session
from openbell.policy import OrderIntent, OrderLimits
from openbell.ports import Deadline, SubmitResult
from openbell.risk.gate import GatedDeadline, GateLatch, SendGate
from openbell.risk.owner import RiskOwner
from openbell.strategy import RiskGate, RiskLimits
from openbell.trading.attempt_report import AttemptReport
from openbell.trading.context import LoopContext
from openbell.trading.dispatch import Dispatcher
from openbell.trading.portfolio import Portfolio

CUT_OFF = datetime(2025, 11, 20, 20, 58, tzinfo=UTC)  # 15:58 ET
SELL = OrderIntent("SSO", "sell", 10, 0.0)


class _Recorder:
    def __init__(self) -> None:
        self.orders: list[Any] = []
        self.events: list[tuple[str, dict[str, Any]]] = []

    def order(self, row: Any) -> None:
        self.orders.append(row)

    def event(self, kind: str, payload: dict[str, Any]) -> None:
        self.events.append((kind, payload))


def _dispatcher() -> tuple[Dispatcher, _Recorder, AttemptReport]:
    recorder, report = _Recorder(), AttemptReport(SESSION.isoformat())
    ctx = LoopContext(the_session(SESSION), ("SSO",), None, None, recorder, report)  # type: ignore[arg-type]
    gate = SendGate(RiskOwner(RiskGate(RiskLimits())), OrderLimits(), trade_until=CUT_OFF)
    return Dispatcher(ctx, Portfolio(), min_notional=1.0, gate=gate), recorder, report


def _not_sent(coid: str, deadline: Deadline) -> SubmitResult:
    """The worker's answer to a job whose ``deadline`` refused it, as the adapter gives it."""
    why = deadline.refusal()
    assert why is not None
    return SubmitResult(coid, "not_sent", reason=why)


def test_an_order_held_in_a_worker_when_the_gate_closed_was_not_past_the_deadline() -> None:
    dispatch, recorder, report = _dispatcher()
    latch = GateLatch()
    latch.set("the risk state is HALTED")
    held = _not_sent("ob-20251120-000001-SSO", GatedDeadline(CUT_OFF, time.time() + 600, latch))
    late = _not_sent("ob-20251120-000002-SSO", GatedDeadline(CUT_OFF, time.time() - 1, GateLatch()))
    dispatch.on_submitted(1, SELL, held)
    dispatch.on_submitted(2, SELL, late)
    assert report.orders_past_deadline == 1
    assert (report.orders_not_sent, report.orders_gate_closed) == (2, 1)
    assert [(r.status, r.reject_reason) for r in recorder.orders] == [("not_sent", held.reason),
                                                                      ("not_sent", late.reason)]
    assert "the send gate closed before it was sent: the risk state is HALTED" in (held.reason or "")
    assert "trading cut-off" in (late.reason or "")
