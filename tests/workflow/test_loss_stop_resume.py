"""A session the loss stop stopped is not resumed by a plain ``resume``: the trigger must carry an explicit extra
loss budget (dollars > 0), bounded for the day by the deployment's daily loss ceiling times the open equity;
the budget is stored (cumulative), journaled, alerted and in the ledger. Bad budgets change nothing. A session the
strategy's failures reduced resumes plainly, as after an operator's halt."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import Engine, text

from dates import SESSION
from openbell.sim.testing import SimProcess
from openbell.store.ledger import steps_for
from openbell.store.sessions import get_risk, record_open_equity, set_phase, set_risk
from openbell.workflow import control
from openbell.workflow.control import ControlRefused, ControlRequest, control_params, run_control

OPEN = 100_000.0
ENV = "AIRFLOW_VAR_OPENBELL_RISK_CEILINGS"


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[SimProcess]:
    with SimProcess(date="2025-11-20", speed=60, start="12:00", data_dir=tmp_path / "sim",
                    extra_args=["--seed-position", "TQQQ:10"]) as s:
        yield s


@pytest.fixture(autouse=True)
def no_deployment_ceilings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The deployment's risk ceilings are the defaults unless a test sets them."""
    monkeypatch.delenv(ENV, raising=False)


@pytest.fixture
def alerts(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    def fake_alert(kind: str, key: str, title: str, body: str, **kwargs: Any) -> Any:
        sent.append({"kind": kind, "title": title, "body": body, "level": kwargs.get("level")})
        return SimpleNamespace(value="sent")

    monkeypatch.setattr(control, "alert", fake_alert)
    return sent


def _run(sim: SimProcess, state_url: str, action: str, budget: Any = None, *, by: str = "alice",
         run: str = "1", reason: str = "loss reviewed") -> dict[str, Any]:
    request = ControlRequest(action=action, reason=reason, by=by, run_id=f"manual__{action}_{run}",
                             extra_loss_budget=budget)
    return run_control(request, sim.config, state_url)


def _loss_stop(engine: Engine, state: str = "HALTED") -> None:
    set_phase(engine, SESSION, "trading")
    record_open_equity(engine, SESSION, OPEN)
    set_risk(engine, SESSION, state, "daily loss 3.10% exceeds limit 3.00%", "openbell", cause="loss_stop")


def _events(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return list(conn.execute(text("SELECT payload FROM events WHERE kind = 'risk_state' ORDER BY id")).scalars())


@pytest.mark.parametrize("state", ["REDUCING", "HALTED"])
def test_a_plain_resume_of_a_loss_stopped_session_is_refused_and_changes_nothing(
    sim: SimProcess, state_url: str, engine: Engine, alerts: list[dict[str, Any]], state: str
) -> None:
    _loss_stop(engine, state)
    before, events = get_risk(engine, SESSION), _events(engine)
    with pytest.raises(ControlRefused) as info:
        _run(sim, state_url, "resume")
    message = str(info.value)
    assert message.startswith(f"resume refused: session {SESSION} was stopped by the loss stop ({state}: "
                              "'daily loss 3.10% exceeds limit 3.00%')"), message
    assert "extra_loss_budget" in message and "at most 3000.00" in message
    assert get_risk(engine, SESSION) == before and _events(engine) == events
    assert steps_for(engine, SESSION) == [] and alerts == []


def test_a_resume_with_a_budget_trades_again_stored_journaled_alerted_and_in_the_ledger(
    sim: SimProcess, state_url: str, engine: Engine, alerts: list[dict[str, Any]]
) -> None:
    _loss_stop(engine)
    summary = _run(sim, state_url, "resume", 1_000)
    risk = get_risk(engine, SESSION)
    assert (risk.state, risk.cause, risk.extra_loss, risk.by) == ("ACTIVE", "operator", 1_000.0, "alice")
    assert (summary["extra_loss_budget"], summary["extra_loss_total"], summary["extra_loss_bound"]) == (
        1_000.0, 1_000.0, 3_000.0)
    assert summary["risk_cause_before"] == "loss_stop" and summary["risk"]["extra_loss"] == 1_000.0
    assert _events(engine)[-1] == {"from": "HALTED", "to": "ACTIVE", "reason": "loss reviewed", "by": "alice",
                                   "cause": "operator", "extra_loss": 1_000.0}
    [row] = steps_for(engine, SESSION)
    assert row["summary"]["extra_loss_budget"] == 1_000.0
    [sent] = alerts
    assert sent["title"] == f"openbell {SESSION}: resume by alice after the loss stop, extra loss budget 1000.00"
    assert "Extra loss budget granted: 1000.00 (today's total 1000.00 of at most 3000.00" in sent["body"]
    assert "the open equity 100000.00" in sent["body"]
    assert "passes the run's daily loss limit plus 1000.00 (at most 4000.00)" in sent["body"]
    assert sent["level"].name == "WARNING"


def test_the_budget_is_cumulative_for_the_day_and_bounded(sim: SimProcess, state_url: str, engine: Engine,
                                                          alerts: list[dict[str, Any]]) -> None:
    _loss_stop(engine)
    _run(sim, state_url, "resume", 1_000)
    set_risk(engine, SESSION, "REDUCING", "daily loss 4.1%", "openbell", cause="loss_stop")  # stopped again
    summary = _run(sim, state_url, "resume", 2_000.0, run="2")
    assert summary["extra_loss_total"] == 3_000.0 and get_risk(engine, SESSION).extra_loss == 3_000.0
    set_risk(engine, SESSION, "HALTED", "daily loss 6.1%", "openbell", cause="loss_stop")
    with pytest.raises(ControlRefused) as info:
        _run(sim, state_url, "resume", 0.01, run="3")
    assert str(info.value) == (
        f"resume refused: an extra loss budget of 0.01 would bring session {SESSION}'s extra loss to 3000.01, "
        "over the bound 3000.00 (the deployment's daily loss ceiling 3% of the open equity 100000.00); "
        "3000.00 granted already")
    assert get_risk(engine, SESSION).state == "HALTED" and len(alerts) == 2


def test_the_bound_follows_the_deployments_ceiling(sim: SimProcess, state_url: str, engine: Engine,
                                                   alerts: list[dict[str, Any]],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, json.dumps({"daily_loss_limit": 0.01}))
    _loss_stop(engine)
    with pytest.raises(ControlRefused, match=r"over the bound 1000.00 \(the deployment's daily loss ceiling 1% "):
        _run(sim, state_url, "resume", 1_500)
    assert _run(sim, state_url, "resume", 1_000)["extra_loss_bound"] == 1_000.0


@pytest.mark.parametrize(
    ("budget", "says"),
    [
        (-100, "extra_loss_budget must be a number of dollars > 0, got -100"),
        (0, "extra_loss_budget must be a number of dollars > 0, got 0"),
        (math.nan, "got nan"),
        (math.inf, "got inf"),
        ("100", "got '100'"),
        (True, "got True"),
        ([100], "got [100]"),
    ],
)
def test_a_bad_budget_is_refused_before_anything_changes(sim: SimProcess, state_url: str, engine: Engine,
                                                         alerts: list[dict[str, Any]], budget: Any,
                                                         says: str) -> None:
    _loss_stop(engine)
    events = _events(engine)
    with pytest.raises(ControlRefused, match="resume refused: ") as info:
        _run(sim, state_url, "resume", budget)
    assert says in str(info.value)
    assert get_risk(engine, SESSION).state == "HALTED" and _events(engine) == events and alerts == []


@pytest.mark.parametrize("action", ["halt", "flatten"])
def test_a_budget_is_only_for_a_resume(sim: SimProcess, state_url: str, engine: Engine, action: str) -> None:
    with pytest.raises(ControlRefused, match=f"{action} refused: extra_loss_budget is only for a resume"):
        _run(sim, state_url, action, 500)
    assert get_risk(engine, SESSION).state == "ACTIVE" and steps_for(engine, SESSION) == []


@pytest.mark.parametrize(
    ("state", "by", "cause", "says"),
    [
        ("ACTIVE", None, None, "is ACTIVE: it was not stopped by the loss stop"),
        ("HALTED", "bob", "operator", "is HALTED by bob (operator): it was not stopped by the loss stop"),
        ("REDUCING", "bob", "operator", "is REDUCING by bob (operator): it was not stopped by the loss stop"),
    ],
)
def test_a_budget_for_a_session_the_loss_stop_did_not_stop_is_refused(
    sim: SimProcess, state_url: str, engine: Engine, state: str, by: str | None, cause: str | None, says: str
) -> None:
    record_open_equity(engine, SESSION, OPEN)
    if by is not None:
        set_risk(engine, SESSION, state, "news", by, cause=cause)
    with pytest.raises(ControlRefused) as info:
        _run(sim, state_url, "resume", 500)
    assert str(info.value).startswith(f"resume refused: session {SESSION} {says}"), str(info.value)
    assert "a plain resume needs no extra loss budget" in str(info.value)
    assert get_risk(engine, SESSION).state == state and steps_for(engine, SESSION) == []


def test_a_plain_resume_after_an_operators_halt_stays_as_it_was(sim: SimProcess, state_url: str,
                                                                engine: Engine, alerts: list[dict[str, Any]]) -> None:
    _run(sim, state_url, "halt", reason="news")
    assert get_risk(engine, SESSION).cause == "operator"
    summary = _run(sim, state_url, "resume", run="2")
    risk = get_risk(engine, SESSION)
    assert (risk.state, risk.cause, risk.extra_loss) == ("ACTIVE", "operator", 0.0)
    assert "extra_loss_budget" not in summary
    assert not any("Extra loss budget" in a["body"] for a in alerts)


def test_a_session_the_strategys_failures_reduced_resumes_plainly_and_takes_no_budget(
    sim: SimProcess, state_url: str, engine: Engine, alerts: list[dict[str, Any]]
) -> None:
    set_phase(engine, SESSION, "trading")
    record_open_equity(engine, SESSION, OPEN)
    set_risk(engine, SESSION, "REDUCING", "the strategy failed 5 minutes in a row", "openbell",
             cause="strategy_failed")
    with pytest.raises(ControlRefused) as info:
        _run(sim, state_url, "resume", 500)
    assert str(info.value).startswith(f"resume refused: session {SESSION} is REDUCING by openbell (strategy_failed): "
                                      "it was not stopped by the loss stop"), str(info.value)
    summary = _run(sim, state_url, "resume", run="2", reason="strategy fixed")
    risk = get_risk(engine, SESSION)
    assert (risk.state, risk.cause, risk.by, risk.extra_loss) == ("ACTIVE", "operator", "alice", 0.0)
    assert summary["risk_cause_before"] == "strategy_failed" and "extra_loss_budget" not in summary
    assert _events(engine)[-1] == {"from": "REDUCING", "to": "ACTIVE", "reason": "strategy fixed", "by": "alice",
                                   "cause": "operator"}
    [sent] = alerts
    assert sent["title"] == f"openbell {SESSION}: resume by alice"


def test_halt_and_flatten_of_a_loss_stopped_session_keep_it_loss_stopped(
    sim: SimProcess, state_url: str, engine: Engine, alerts: list[dict[str, Any]]
) -> None:
    _loss_stop(engine, "REDUCING")
    _run(sim, state_url, "halt", reason="belt")
    risk = get_risk(engine, SESSION)
    assert (risk.state, risk.cause, risk.by) == ("REDUCING", "loss_stop", "alice")
    _run(sim, state_url, "flatten", reason="braces", run="2")
    risk = get_risk(engine, SESSION)
    assert (risk.state, risk.cause, risk.by) == ("HALTED", "loss_stop", "alice")
    with pytest.raises(ControlRefused, match="stopped by the loss stop"):
        _run(sim, state_url, "resume", run="3")  # a halt or a flatten does not launder the loss stop


def test_a_loss_stopped_session_without_an_open_equity_cannot_be_given_a_budget(
    sim: SimProcess, state_url: str, engine: Engine
) -> None:
    set_risk(engine, SESSION, "HALTED", "daily loss", "openbell", cause="loss_stop")
    with pytest.raises(ControlRefused, match="no open equity is stored for session 2025-11-20"):
        _run(sim, state_url, "resume", 500)


def test_the_airflow_request_carries_the_budget() -> None:
    def context(budget: Any) -> dict[str, Any]:
        return {"dag_run": SimpleNamespace(run_id="manual__x", triggering_user_name="alice",
                                           dag_id="trading_control"),
                "params": {"action": "resume", "reason": "why", "session_date": None, "extra_loss_budget": budget}}

    assert ControlRequest.from_airflow(context(1500.5)).extra_loss_budget == 1500.5
    assert ControlRequest.from_airflow(context(None)).extra_loss_budget is None
    params = control_params()
    schema = params["extra_loss_budget"].schema
    assert params["extra_loss_budget"].value is None
    assert schema["type"] == ["null", "number"] and schema["exclusiveMinimum"] == 0
