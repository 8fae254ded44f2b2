"""A strategy failing in the middle of the day: a minute whose ``on_minute`` raises, overruns its time budget or
returns an unclear output is skipped (no order, positions kept), noted, counted and logged; after N failures in a
row the session goes REDUCING once (stored with its cause, alerted once), a good minute or a resume starts the
count over, and a loss stop's closes still go while the strategy fails.

In memory: the decider, the strategy guard, the dispatcher, the send gate, the risk owner and the RiskLink as the
loop builds them, with stand-ins for the order workers, the recorder, the helper threads and the clock; no
simulator, no Postgres (but for the one test that stores the state).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import Engine

from dates import SESSION, the_session
from openbell.policy import OrderLimits, OrderPolicy
from openbell.risk.gate import SendGate
from openbell.risk.owner import RiskOwner
from openbell.risk.state import RiskCause, RiskState
from openbell.store.sessions import get_risk
from openbell.strategy import RiskGate, RiskLimits
from openbell.trading import risklink
from openbell.trading.attempt_report import AttemptReport
from openbell.trading.context import LoopContext
from openbell.trading.decide import Decider
from openbell.trading.dispatch import Dispatcher
from openbell.trading.guard import StrategyGuard
from openbell.trading.minutes import MINUTE
from openbell.trading.portfolio import Portfolio
from openbell.trading.risklink import RiskLink

CUT_OFF = datetime(2025, 11, 20, 20, 58, tzinfo=UTC)  # 15:58 ET
FIRST = datetime(2025, 11, 20, 17, 0, tzinfo=UTC)  # 12:00 ET
UNIVERSE = ("SSO", "TQQQ")
HELD = {"SSO": 100.0}  # 100 x 50.00 = 5% of the 100,000 equity

Behaviour = Callable[["Loop"], Any]  # what on_minute does for one minute: its return value


class _Clock:
    """Market time, moved by the test (and by a slow strategy)."""

    def __init__(self) -> None:
        self.t = FIRST

    def now(self) -> datetime:
        return self.t

    def wall_deadline(self, t: datetime) -> float:
        return time.time() + (t - self.t).total_seconds()


class _Threads:
    """The helper pool: what is handed to it is kept, to run or not."""

    def __init__(self) -> None:
        self.submitted: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []
        self.pool = self
        self.closing = False

    def submit(self, fn: Callable[..., Any], *args: Any) -> bool:
        self.submitted.append((fn, args))
        return True

    @property
    def names(self) -> list[str]:
        return [fn.__name__ for fn, _ in self.submitted]


class _Recorder:
    def __init__(self) -> None:
        self.decisions: list[dict[str, Any]] = []

    def decision(self, t: datetime, seq: int, targets: Any, weights: Any, notes: list[str], *rest: Any) -> None:
        self.decisions.append({"t": t, "targets": dict(targets), "weights": dict(weights), "notes": list(notes)})

    def event(self, *args: Any) -> None:
        pass

    def order(self, *args: Any) -> None:
        pass

    def not_sent(self, *args: Any) -> None:
        pass


class _Sender:
    """The order workers: the orders handed over, as (symbol, side, qty)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, float]] = []
        self.ids: list[str] = []

    def submit_all(self, jobs: list[Any]) -> None:
        self.sent += [(job.symbol, job.side, job.qty) for job, _ in jobs]
        self.ids += [job.client_order_id for job, _ in jobs]


class _Strategy:
    """Does, each minute, what the test scripted next (the last behaviour repeats)."""

    def __init__(self, loop: Loop) -> None:
        self.loop = loop
        self.script: list[Behaviour] = []

    def on_minute(self, t: datetime, bars: Any) -> Any:
        behaviour = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        return behaviour(self.loop)


class Loop:
    """One attempt's parts, wired as TradingAttempt wires them."""

    def __init__(self, *, reduce_after: int = 3, budget: float = 20.0, gate: RiskGate | None = None,
                 account: str | None = None) -> None:
        self.clock, self.threads, self.recorder, self.sender = _Clock(), _Threads(), _Recorder(), _Sender()
        self.report = AttemptReport(SESSION.isoformat())
        ctx = LoopContext(the_session(SESSION), UNIVERSE, self.clock, self.threads, self.recorder,  # type: ignore[arg-type]
                          self.report, account)
        self.gate = gate or RiskGate(RiskLimits(max_weight=0.5), universe=UNIVERSE)
        self.risk = RiskOwner(self.gate)
        self.send_gate = SendGate(self.risk, OrderLimits(), trade_until=CUT_OFF)
        self.link = RiskLink(ctx, self.risk, self.send_gate, engine=None)  # type: ignore[arg-type]
        self.portfolio = Portfolio(cash=95_000.0, positions=dict(HELD), prices={"SSO": 50.0, "TQQQ": 20.0})
        self.portfolio.set_buying_power(95_000.0)
        self.dispatch = Dispatcher(ctx, self.portfolio, policy=OrderPolicy(min_notional=100.0), gate=self.send_gate)
        self.dispatch.sender = self.sender  # type: ignore[assignment]
        self.guard = StrategyGuard(ctx, self.gate, budget=timedelta(seconds=budget), reduce_after=reduce_after,
                                   on_reduce=self.link.strategy_failed)
        self.risk.listen(self.guard.risk_changed)
        self.strategy = _Strategy(self)
        params = SimpleNamespace(strategy=self.strategy, candidate=None, version_id=None)
        self.decider = Decider(ctx, self.portfolio, self.guard, params, self.dispatch,  # type: ignore[arg-type]
                               SimpleNamespace(ok=True, out=None), trade_until=CUT_OFF, on_stop=self.link.loss_stop)

    def decide(self, *script: Behaviour) -> list[tuple[str, str, float]]:
        """One minute per behaviour given, decided at its end; the orders handed to the workers meanwhile."""
        before = len(self.sender.sent)
        for behaviour in script:
            self.strategy.script = [behaviour]
            t = FIRST + self.decider.seq * MINUTE
            self.clock.t = t + MINUTE + timedelta(seconds=1)
            self.decider.decide(t, {}, None, trade=True)
        return self.sender.sent[before:]

    @property
    def notes(self) -> list[str]:
        return self.recorder.decisions[-1]["notes"]


# -- what a strategy does in one minute -----------------------------------------------------------------------

def keep(loop: Loop) -> dict[str, float]:
    return {"SSO": 0.05, "TQQQ": 0.0}  # what is held: no order


def sell_sso(loop: Loop) -> dict[str, float]:
    return {"SSO": 0.0, "TQQQ": 0.0}


def buy_tqqq(loop: Loop) -> dict[str, float]:
    return {"SSO": 0.05, "TQQQ": 0.1}


def raises(loop: Loop) -> Any:
    raise ZeroDivisionError("division by zero\nin the signal")


def slow(seconds: float, then: Behaviour = sell_sso) -> Behaviour:
    def behaviour(loop: Loop) -> Any:
        loop.clock.t += timedelta(seconds=seconds)  # market time passes while it computes
        return then(loop)
    return behaviour


def nan(loop: Loop) -> dict[str, float]:
    return {"SSO": math.nan, "TQQQ": 0.0}


def negative(loop: Loop) -> dict[str, float]:
    return {"SSO": -0.05, "TQQQ": 0.0}


def over_gross(loop: Loop) -> dict[str, float]:
    return {"SSO": 0.5, "TQQQ": 0.6}


def unknown(loop: Loop) -> dict[str, float]:
    return {"sso": 0.05}


FAILURES = [
    (raises, "raised", "on_minute raised ZeroDivisionError: division by zero in the signal"),
    (slow(21), "late", "on_minute took 21.0 market seconds, over its budget of 20: its targets are discarded"),
    (nan, "not_finite", "SSO: weight nan is not a finite number"),
    (negative, "short", "SSO: weight -0.05 is negative and the run allows no shorts"),
    (over_gross, "over_gross", "gross 1.1 is over the gross limit 1"),
    (unknown, "not_in_universe", "a weight for 'sso', which is not in the universe"),
]


def test_the_harness_trades_what_a_clear_strategy_asks() -> None:
    loop = Loop()
    assert loop.decide(keep) == []
    assert loop.decide(sell_sso) == [("SSO", "sell", 100.0)]
    assert loop.sender.ids == ["ob-20251120-000001-SSO"]  # the default account's id, untagged


def test_a_named_accounts_orders_carry_its_name() -> None:
    loop = Loop(account="alpha")
    assert loop.decide(keep, sell_sso) == [("SSO", "sell", 100.0)]
    assert loop.sender.ids == ["ob-alpha-20251120-000001-SSO"]


@pytest.mark.parametrize(("failing", "kind", "reason"), FAILURES, ids=[k for _, k, _ in FAILURES])
def test_a_failure_skips_the_minute_keeps_the_positions_and_is_noted_and_counted(
        failing: Behaviour, kind: str, reason: str) -> None:
    loop = Loop()
    assert loop.decide(failing) == []  # a NaN, a short or a late "sell everything" set to 0 would sell SSO
    assert loop.portfolio.positions == HELD and loop.portfolio.working == {}
    assert loop.notes[0] == f"strategy failed ({kind}): {reason}; minute skipped, positions kept"
    assert loop.recorder.decisions[-1]["targets"] == {} and loop.recorder.decisions[-1]["weights"] == {}
    assert (loop.report.strategy_failures, loop.report.strategy_failures_by_kind) == (1, {kind: 1})
    assert loop.report.decisions == 1 and loop.risk.state is RiskState.ACTIVE and loop.threads.submitted == []


def test_the_time_budget_is_market_time_and_a_call_within_it_trades() -> None:
    loop = Loop(budget=20.0)
    assert loop.decide(slow(19.5)) == [("SSO", "sell", 100.0)]
    assert loop.report.strategy_failures == 0


def test_each_kind_is_logged_once_with_its_reason_and_counted_after(caplog: pytest.LogCaptureFixture) -> None:
    loop = Loop(reduce_after=100)
    with caplog.at_level(logging.DEBUG, logger="openbell.trading.guard"):
        loop.decide(raises, raises, nan, raises, nan)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert [r.getMessage().split(": ", 1)[1] for r in errors] == [
        "on_minute raised ZeroDivisionError: division by zero in the signal; minute skipped, positions kept "
        "(logged once per kind; later ones are counted)",
        "SSO: weight nan is not a finite number; minute skipped, positions kept (logged once per kind; later ones "
        "are counted)",
    ]
    assert errors[0].exc_info is not None and errors[0].exc_info[0] is ZeroDivisionError  # with its traceback
    assert loop.report.strategy_failures == 5
    assert loop.report.strategy_failures_by_kind == {"raised": 3, "not_finite": 2}


def test_a_good_minute_starts_the_count_over() -> None:
    loop = Loop(reduce_after=3)
    loop.decide(raises, nan)
    assert loop.guard.in_a_row == 2
    assert loop.decide(sell_sso) == [("SSO", "sell", 100.0)]  # a good minute trades as asked
    assert loop.guard.in_a_row == 0
    loop.decide(slow(30), over_gross)
    assert loop.risk.state is RiskState.ACTIVE and loop.guard.in_a_row == 2
    assert loop.report.strategy_failures == 4


def test_the_nth_failure_in_a_row_reduces_once_stored_with_its_cause_and_alerted_once(
        monkeypatch: pytest.MonkeyPatch) -> None:
    stored: list[dict[str, Any]] = []
    alerts: list[dict[str, Any]] = []
    monkeypatch.setattr(risklink, "set_risk", lambda engine, d, state, reason, by, **kw: stored.append(
        {"state": state, "reason": reason, "by": by, **kw}))
    monkeypatch.setattr(risklink, "alert", lambda kind, key, title, body, **kw: alerts.append(
        {"kind": kind, "key": key, "title": title, "body": body, **kw}))
    loop = Loop(reduce_after=3)
    loop.decide(raises, nan)
    assert loop.risk.state is RiskState.ACTIVE
    loop.decide(slow(25))  # the third in a row: the minute of 12:02 ET, decided at 12:03
    assert (loop.risk.state, loop.risk.cause) == (RiskState.REDUCING, RiskCause.STRATEGY_FAILED)
    loop.decide(raises, raises, negative)  # failing on: no second move
    assert loop.threads.names == ["store_strategy_failed"]
    assert [c["state"] for c in loop.report.risk_changes] == ["REDUCING"]
    assert loop.report.risk_changes[0]["cause"] == "strategy_failed"
    reason = ("the strategy failed 3 minutes in a row, the last the minute of 12:02 ET (late: on_minute took 25.0 "
              "market seconds, over its budget of 20: its targets are discarded)")
    assert loop.report.strategy_reduced == reason and loop.report.risk_state == "REDUCING"
    for fn, args in loop.threads.submitted:
        fn(*args)
    [row] = stored
    assert (row["state"], row["by"], row["cause"], row["reason"]) == ("REDUCING", "openbell", "strategy_failed", reason)
    [sent] = alerts
    assert sent["kind"] == "strategy_failed" and sent["level"].name == "FAILURE"
    assert sent["title"] == f"openbell {SESSION}: the strategy kept failing, REDUCING since 12:03 ET"
    assert sent["key"] == "2025-11-20T17:03+00:00" and reason in sent["body"]
    assert "trading_control with action resume" in sent["body"] and "flatten" in sent["body"]
    assert loop.portfolio.positions == HELD and loop.sender.sent == []
    assert loop.report.strategy_failures == 6


def test_reducing_after_the_failures_lets_only_orders_that_shrink_a_position_leave() -> None:
    loop = Loop(reduce_after=2)
    loop.decide(raises, raises)
    assert loop.risk.state is RiskState.REDUCING
    assert loop.decide(buy_tqqq) == []  # it would open TQQQ: held
    assert any("the risk state is REDUCING" in n for n in loop.notes)
    assert loop.decide(sell_sso) == [("SSO", "sell", 100.0)]


def test_a_resume_starts_the_count_over_and_a_later_run_of_failures_reduces_again() -> None:
    loop = Loop(reduce_after=2)
    loop.decide(raises, raises, raises, raises)
    assert loop.risk.state is RiskState.REDUCING and loop.guard.in_a_row == 4
    loop.link.follow("ACTIVE", "operator", 0.0)  # trading_control resume
    assert loop.risk.state is RiskState.ACTIVE and loop.guard.in_a_row == 0
    loop.decide(nan)
    assert loop.risk.state is RiskState.ACTIVE
    loop.decide(nan)
    assert loop.risk.state is RiskState.REDUCING
    assert loop.threads.names == ["store_strategy_failed", "store_strategy_failed"]


def test_an_operators_halt_is_not_moved_by_the_failures() -> None:
    loop = Loop(reduce_after=2)
    loop.link.follow("REDUCING", "operator", 0.0)
    loop.decide(raises, raises, raises)
    assert (loop.risk.state, loop.risk.cause) == (RiskState.REDUCING, RiskCause.OPERATOR)
    assert loop.threads.names == [] and loop.report.strategy_reduced is None


def test_a_loss_stops_closes_still_go_while_the_strategy_fails() -> None:
    loop = Loop(reduce_after=2)
    loop.decide(raises)
    loop.gate.halt("daily loss limit: drill")
    assert loop.decide(raises) == [("SSO", "sell", 100.0)]  # the trip's own minute closes
    assert loop.risk.flattening and loop.risk.cause is RiskCause.LOSS_STOP
    loop.decide(nan, raises)  # the failures in a row go on: the loss stop holds, no move of theirs
    assert loop.risk.cause is RiskCause.LOSS_STOP and loop.report.strategy_reduced is None
    assert loop.threads.names == ["store_halt"]


def test_the_daily_loss_limit_is_checked_while_the_strategy_fails() -> None:
    gate = RiskGate(RiskLimits(max_weight=0.5, daily_loss_limit=0.03), universe=UNIVERSE, day_start_equity=110_000.0)
    loop = Loop(reduce_after=1, gate=gate)
    assert loop.decide(nan) == [("SSO", "sell", 100.0)]  # equity 100,000: 9% down, the loss stop closes
    assert loop.risk.flattening and loop.report.loss_stop is not None
    assert loop.report.strategy_reduced is None and loop.threads.names == ["store_halt"]


def test_a_reducing_the_failures_stored_is_restored_as_reducing_closes_only(engine: Engine) -> None:
    loop = Loop(reduce_after=1)
    loop.link.engine = engine
    loop.decide(raises)
    [(store, args)] = loop.threads.submitted
    store(*args)  # stored, and alerted (alerts are off: no openbell_notify connection)
    record = get_risk(engine, SESSION)
    assert (record.state, record.cause, record.by) == ("REDUCING", "strategy_failed", "openbell")
    assert not record.loss_stopped and record.reason == loop.report.strategy_reduced
    later = Loop()
    later.link.restore(record)  # the next attempt
    assert (later.risk.state, later.risk.cause) == (RiskState.REDUCING, RiskCause.STRATEGY_FAILED)
    assert not later.risk.flattening and not later.gate.stopped
    assert later.decide(buy_tqqq) == [] and later.decide(sell_sso) == [("SSO", "sell", 100.0)]
