"""The loss stop is tripped once: the decision that finds the risk gate stopped trips it (REDUCING, stored and
alerted once), later minutes do not ask again while it holds (REDUCING, then HALTED once flat), and after a
resume a new stop trips again. In memory: the decider and the RiskLink with stand-ins of the dispatcher, the
parameters, the fencing, the recorder and the helper threads; no simulator, no Postgres."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

from dates import SESSION, the_session
from openbell.policy import OrderLimits
from openbell.risk.gate import SendGate
from openbell.risk.owner import RiskOwner
from openbell.risk.state import RiskState
from openbell.strategy import RiskGate, RiskLimits
from openbell.trading.attempt_report import AttemptReport
from openbell.trading.context import LoopContext
from openbell.trading.decide import Decider
from openbell.trading.guard import StrategyGuard
from openbell.trading.minutes import MINUTE
from openbell.trading.portfolio import Portfolio
from openbell.trading.risklink import RiskLink

CUT_OFF = datetime(2025, 11, 20, 20, 58, tzinfo=UTC)  # 15:58 ET
FIRST = datetime(2025, 11, 20, 17, 0, tzinfo=UTC)


class _Clock:
    def now(self) -> datetime:
        return FIRST


class _Pool:
    def __init__(self) -> None:
        self.submitted: list[str] = []

    def submit(self, fn: Any, *args: Any) -> None:
        self.submitted.append(fn.__name__)


class _Strategy:
    def on_minute(self, t: datetime, bars: dict[str, Any]) -> dict[str, float]:
        return {"SSO": 0.5}


class _Dispatcher:
    def __init__(self, gate: SendGate) -> None:
        self.gate = gate

    def place(self, seq: int, weights: dict[str, float], notes: list[str], ready: float | None, *,
              trade: bool) -> list[Any]:
        return []


class _Recorder:
    def decision(self, *args: Any) -> None:
        pass


def _loop() -> tuple[Decider, RiskLink, list[str], _Pool]:
    """A decider whose stops go to a RiskLink, as the loop builds them; (decider, link, stop requests, pool)."""
    pool = _Pool()
    threads = SimpleNamespace(pool=pool)
    report = AttemptReport(SESSION.isoformat())
    ctx = LoopContext(the_session(SESSION), ("SSO",), _Clock(), threads, _Recorder(), report)  # type: ignore[arg-type]
    gate = RiskGate(RiskLimits())
    risk = RiskOwner(gate)
    send_gate = SendGate(risk, OrderLimits(), trade_until=CUT_OFF)
    link = RiskLink(ctx, risk, send_gate, engine=None)  # type: ignore[arg-type]
    requests: list[str] = []

    def on_stop(reason: str) -> None:
        requests.append(reason)
        link.loss_stop(reason)

    params = SimpleNamespace(strategy=_Strategy(), candidate=None, version_id=None)
    fencing = SimpleNamespace(ok=True, out=None)
    guard = StrategyGuard(ctx, gate, budget=timedelta(seconds=20), reduce_after=5, on_reduce=link.strategy_failed)
    decider = Decider(ctx, Portfolio(cash=100_000.0), guard, params, _Dispatcher(send_gate), fencing,  # type: ignore[arg-type]
                      trade_until=CUT_OFF, on_stop=on_stop)
    return decider, link, requests, pool


def _decide(decider: Decider, minutes: int = 1) -> None:
    for _ in range(minutes):
        decider.decide(FIRST + decider.seq * MINUTE, {}, None, trade=True)


def test_the_loss_stop_is_requested_once_while_it_holds_reducing_then_halted() -> None:
    decider, link, requests, pool = _loop()
    _decide(decider)
    assert requests == []
    link.gate.halt("daily loss limit: drill")
    _decide(decider, 3)
    assert requests == ["daily loss limit: drill"]
    assert link.risk.state is RiskState.REDUCING and link.risk.flattening
    assert link.report.loss_stop == "daily loss limit: drill" and pool.submitted == ["store_halt"]
    link.synced({"SSO": 0.0})  # the broker shows every position closed
    assert link.risk.state is RiskState.HALTED
    _decide(decider, 2)
    assert requests == ["daily loss limit: drill"]
    assert [c["state"] for c in link.report.risk_changes] == ["REDUCING", "HALTED"]
    assert pool.submitted == ["store_halt", "store"]


def test_an_operators_halt_requests_no_loss_stop_and_a_stop_after_a_resume_trips_again() -> None:
    decider, link, requests, pool = _loop()
    link.follow("HALTED", "operator", 0.0)
    _decide(decider, 2)
    assert requests == [] and link.risk.state is RiskState.HALTED and not link.risk.loss_stopped
    link.follow("ACTIVE", "operator", 0.0)  # a resume
    assert not link.gate.stopped
    link.gate.halt("daily loss limit: again")
    _decide(decider, 2)
    assert requests == ["daily loss limit: again"] and link.risk.loss_stopped
    assert link.report.loss_stop == "daily loss limit: again" and pool.submitted == ["store_halt"]
