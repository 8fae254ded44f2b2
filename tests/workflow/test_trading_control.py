"""The trading_control step against a real simulator and a real Postgres: halt, flatten, resume, the
refusals that change nothing, the Airflow user recorded, the alert sent; and the DAG as Airflow loads it."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import Engine, text

from dates import SESSION
from openbell.sim.testing import SimProcess
from openbell.store.ledger import steps_for
from openbell.store.sessions import get_phase, get_risk, record_open_equity, set_phase, set_risk
from openbell.workflow.control import (
    UNKNOWN_USER,
    ControlRefused,
    ControlRequest,
    control_params,
    run_control,
    trading_control,
)

ROOT = Path(__file__).resolve().parents[2]
SEEDED = {"TQQQ": 10.0, "SQQQ": -5.0}


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[SimProcess]:
    with SimProcess(date="2025-11-20", speed=60, start="12:00", data_dir=tmp_path / "sim",
                    extra_args=["--seed-position", "TQQQ:10", "--seed-position", "SQQQ:-5"]) as s:
        yield s


def _run(sim: SimProcess, state_url: str, action: str, reason: str = "operator test", *, by: str = "alice",
         run: str = "1", session_date: date | None = None) -> dict[str, Any]:
    request = ControlRequest(action=action, reason=reason, by=by, session_date=session_date,
                             run_id=f"manual__{action}_{run}")
    return run_control(request, sim.config, state_url)


def _positions(sim: SimProcess) -> dict[str, float]:
    return {p.symbol: float(p.qty) for p in sim.config().trading_client().get_all_positions()}


def _count(engine: Engine, table: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())


def _risk_events(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return list(conn.execute(text("SELECT payload FROM events WHERE kind = 'risk_state' ORDER BY id")).scalars())


def test_halt_stops_new_exposure_and_leaves_the_positions(sim: SimProcess, state_url: str, engine: Engine) -> None:
    summary = _run(sim, state_url, "halt", "unusual volatility")
    assert (summary["action"], summary["by"], summary["risk_before"]) == ("halt", "alice", "ACTIVE")
    assert summary["alert"] == "off"  # no openbell_notify connection: alerts are off
    risk = get_risk(engine, SESSION)
    assert (risk.state, risk.reason, risk.by) == ("REDUCING", "unusual volatility", "alice")
    assert risk.changed_at is not None and risk.changed_at.date() == SESSION  # the simulator's market time
    assert _positions(sim) == SEEDED  # what is held is closed by the end-of-day liquidation (or a flatten)
    [row] = steps_for(engine, SESSION)
    assert (row["step"], row["status"], row["run_id"]) == ("trading_control", "success", "manual__halt_1")
    assert row["summary"]["risk"]["state"] == "REDUCING" and row["summary"]["reason"] == "unusual volatility"
    assert _risk_events(engine) == [{"from": "ACTIVE", "to": "REDUCING", "reason": "unusual volatility",
                                     "by": "alice", "cause": "operator"}]


def test_flatten_ends_flat_and_halted_and_resume_trades_again(sim: SimProcess, state_url: str,
                                                              engine: Engine) -> None:
    set_phase(engine, SESSION, "trading")
    summary = _run(sim, state_url, "flatten", "broker incident")
    assert _positions(sim) == {}
    assert sim.config().trading_client().get_orders() == []  # no open order left
    assert summary["flat"] is True and summary["liquidation"]["flat"] is True
    assert summary["first_pass"]["close_orders"] == 2
    risk = get_risk(engine, SESSION)
    assert (risk.state, risk.reason, risk.by) == ("HALTED", "broker incident", "alice")
    assert get_phase(engine, SESSION) == "trading"  # the live loop stays up, halted, until a resume
    with engine.connect() as conn:
        closes = conn.execute(text("SELECT symbol, side, origin FROM orders ORDER BY symbol")).all()
        book = dict(conn.execute(text("SELECT symbol, qty FROM positions")).all())
    assert [tuple(c) for c in closes] == [("SQQQ", "buy", "liquidation"), ("TQQQ", "sell", "liquidation")]
    assert all(qty == 0 for qty in book.values())
    # a halt would loosen HALTED to REDUCING: refused, nothing changed
    with pytest.raises(ControlRefused, match="already HALTED"):
        _run(sim, state_url, "halt", "again")
    assert get_risk(engine, SESSION).state == "HALTED"
    _run(sim, state_url, "resume", "incident over", by="bob")
    risk = get_risk(engine, SESSION)
    assert (risk.state, risk.reason, risk.by) == ("ACTIVE", "incident over", "bob")
    assert [(r["step"], r["status"], r["summary"]["action"]) for r in steps_for(engine, SESSION)] == [
        ("trading_control", "success", "flatten"), ("trading_control", "success", "resume")]
    assert [(e["from"], e["to"], e["by"]) for e in _risk_events(engine)] == [
        ("ACTIVE", "HALTED", "alice"), ("HALTED", "ACTIVE", "bob")]


def test_flatten_leaves_a_session_the_eod_liquidation_began_liquidating(sim: SimProcess, state_url: str,
                                                                          engine: Engine) -> None:
    set_phase(engine, SESSION, "liquidating")
    _run(sim, state_url, "flatten", "belt and braces")
    assert _positions(sim) == {} and get_phase(engine, SESSION) == "liquidating"
    assert get_risk(engine, SESSION).state == "HALTED"


@pytest.mark.parametrize(
    ("action", "reason", "session_date", "message"),
    [
        ("stop", "why", None, r"unknown action 'stop'; use one of halt, flatten, resume"),
        ("", "why", None, r"unknown action ''"),
        ("flatten", "", None, r"flatten refused: a reason is required"),
        ("halt", "   \n", None, r"halt refused: a reason is required"),
        ("flatten", "why", date(2025, 11, 22), r"flatten refused: 2025-11-22 is not an NYSE session"),
        ("flatten", "why", date(2025, 11, 27), r"2025-11-27 is not an NYSE session"),  # Thanksgiving
        ("halt", "why", date(2025, 11, 19), r"halt refused: session 2025-11-19 09:30-16:00 ET is over "
                                            r"\(market time 2025-11-20 12:\d\d ET\)"),
        ("flatten", "why", date(2025, 11, 21), r"session 2025-11-21 09:30-16:00 ET has not started"),
        ("resume", "why", date(2025, 11, 21), r"resume refused: session 2025-11-21 .* has not started"),
        ("halt", "why", date(1990, 1, 2), r"halt refused: .*calendar"),
    ],
)
def test_bad_requests_are_refused_before_anything_changes(sim: SimProcess, state_url: str, engine: Engine,
                                                          action: str, reason: str, session_date: date | None,
                                                          message: str) -> None:
    with pytest.raises(ControlRefused, match=message):
        _run(sim, state_url, action, reason, session_date=session_date)
    assert _positions(sim) == SEEDED
    for table in ("trading_sessions", "step_runs", "events", "orders"):
        assert _count(engine, table) == 0, table


def test_an_unreadable_session_date_is_refused() -> None:
    context = {"dag_run": SimpleNamespace(run_id="manual__x", triggering_user_name="alice", dag_id="trading_control"),
               "params": {"action": "halt", "reason": "why", "session_date": "2025-13-01"}}
    with pytest.raises(ControlRefused, match=r"session_date '2025-13-01' is not a date \(YYYY-MM-DD\)"):
        ControlRequest.from_airflow(context)


class _Receiver:
    """A loopback HTTP server recording each JSON body Apprise's ``json://`` posts."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                received.append(json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0)))))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"json://127.0.0.1:{self.server.server_address[1]}/"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def airflow_conns(sim: SimProcess, state_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[_Receiver]:
    """The run's connections as Airflow hands them to a task: Alpaca (the simulator), state database, alerts."""
    receiver = _Receiver()
    conn = {"conn_type": "alpaca", "login": sim.key, "password": sim.secret,
            "extra": {"simulator_url": sim.base_url}}
    monkeypatch.setenv("AIRFLOW_CONN_ALPACA_DEFAULT", json.dumps(conn))
    monkeypatch.delenv("AIRFLOW_CONN_OPENBELL_DB", raising=False)
    monkeypatch.setenv("OPENBELL_DATABASE_URL", state_url)
    monkeypatch.setenv("AIRFLOW_CONN_OPENBELL_NOTIFY",
                       json.dumps({"conn_type": "apprise", "extra": {"config": {"path": receiver.url}}}))
    yield receiver
    receiver.close()


def _context(action: str, reason: str, user: str | None, run_id: str) -> dict[str, Any]:
    dag_run = SimpleNamespace(run_id=run_id, dag_id="trading_control", triggering_user_name=user)
    return {"dag_run": dag_run, "ti": SimpleNamespace(try_number=1),
            "params": {"action": action, "reason": reason, "session_date": None}}


def test_the_airflow_task_records_the_triggering_user_and_alerts(airflow_conns: _Receiver, engine: Engine) -> None:
    summary = trading_control(_context("flatten", "desk call", "carol", "manual__2025-11-20T17:00:00"))
    assert summary["by"] == "carol" and summary["flat"] is True and summary["alert"] == "sent"
    risk = get_risk(engine, SESSION)  # the session is today's by the simulator's market clock
    assert (risk.state, risk.by, risk.reason) == ("HALTED", "carol", "desk call")
    [row] = steps_for(engine, SESSION)
    assert (row["step"], row["summary"]["by"], row["run_id"]) == ("trading_control", "carol",
                                                                  "manual__2025-11-20T17:00:00")
    [message] = airflow_conns.received
    assert message["title"] == "openbell 2025-11-20: flatten by carol"
    assert message["type"] == "warning"
    assert "ACTIVE -> HALTED" in message["message"] and "desk call" in message["message"]
    assert "The account is flat" in message["message"]
    trading_control(_context("resume", "all clear", None, "manual__2025-11-20T17:05:00"))
    assert get_risk(engine, SESSION).by == UNKNOWN_USER  # a run without a user (the CLI) says so
    assert [m["title"] for m in airflow_conns.received][1:] == [f"openbell 2025-11-20: resume by {UNKNOWN_USER}"]


def test_the_loss_stop_is_a_from_state_a_resume_records(sim: SimProcess, state_url: str, engine: Engine) -> None:
    record_open_equity(engine, SESSION, 100_000.0)
    set_risk(engine, SESSION, "HALTED", "daily loss limit", "openbell", cause="loss_stop")
    with pytest.raises(ControlRefused, match="stopped by the loss stop"):  # a plain resume grants no fresh limit
        _run(sim, state_url, "resume", "limit reviewed")
    request = ControlRequest(action="resume", reason="limit reviewed", by="alice", run_id="manual__resume_2",
                             extra_loss_budget=500)
    summary = run_control(request, sim.config, state_url)
    assert (summary["risk_before"], summary["risk_cause_before"]) == ("HALTED", "loss_stop")
    risk = get_risk(engine, SESSION)
    assert (risk.state, risk.cause, risk.extra_loss) == ("ACTIVE", "operator", 500.0)


def test_the_params_schema() -> None:
    params = control_params()
    assert set(params) == {"action", "reason", "session_date", "extra_loss_budget"}
    assert params["action"].schema["enum"] == ["halt", "flatten", "resume"]


def test_the_dag_loads_manual_only_with_its_params(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import json
        from airflow.dag_processing.dagbag import DagBag
        from airflow.serialization.serialized_objects import DagSerialization
        bag = DagBag({str(ROOT / 'dags')!r})
        dag = bag.dags["trading_control"]
        served = DagSerialization.from_dict(json.loads(json.dumps(DagSerialization.to_dict(dag))))

        def outcome(conf):
            try:
                served.params.deep_merge(conf).validate()
                return "accepted"
            except Exception as exc:
                return "refused"

        cases = {{
            "ok": {{"action": "flatten", "reason": "why"}},
            "ok_date": {{"action": "halt", "reason": "why", "session_date": "2025-11-20"}},
            "no_action": {{"reason": "why"}},
            "no_reason": {{"action": "halt"}},
            "bad_action": {{"action": "stop", "reason": "why"}},
            "empty_reason": {{"action": "halt", "reason": ""}},
            "blank_reason": {{"action": "halt", "reason": "   "}},
            "bad_date": {{"action": "halt", "reason": "why", "session_date": "2025-13-01"}},
            "budget": {{"action": "resume", "reason": "why", "extra_loss_budget": 1500.5}},
            "no_budget": {{"action": "resume", "reason": "why", "extra_loss_budget": None}},
            "zero_budget": {{"action": "resume", "reason": "why", "extra_loss_budget": 0}},
            "negative_budget": {{"action": "resume", "reason": "why", "extra_loss_budget": -5}},
            "nan_budget": {{"action": "resume", "reason": "why", "extra_loss_budget": float("nan")}},
            "text_budget": {{"action": "resume", "reason": "why", "extra_loss_budget": "500"}},
        }}
        print(json.dumps({{
            "errors": {{k: str(v) for k, v in bag.import_errors.items()}},
            "tasks": [t.task_id for t in dag.tasks],
            "timetable": type(dag.timetable).__name__,
            "manual": not dag.timetable.can_be_scheduled,
            "paused": dag.is_paused_upon_creation,
            "max_active_runs": dag.max_active_runs,
            "params": {{k: dag.params.get_param(k).schema for k in dag.params.keys()}},
            "outcomes": {{k: outcome(v) for k, v in cases.items()}},
        }}))
        """
    )
    env = {"AIRFLOW_HOME": str(tmp_path), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
           "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    info = json.loads(out.stdout.strip().splitlines()[-1])
    assert info["errors"] == {}
    assert info["tasks"] == ["trading_control"]
    assert info["timetable"] == "NullTimetable" and info["manual"] is True
    assert info["paused"] is False and info["max_active_runs"] == 1
    assert info["params"]["action"]["enum"] == ["halt", "flatten", "resume"]
    assert info["params"]["session_date"]["type"] == ["null", "string"]
    assert info["outcomes"] == {"ok": "accepted", "ok_date": "accepted", "no_action": "refused",
                                "no_reason": "refused", "bad_action": "refused", "empty_reason": "refused",
                                "blank_reason": "refused", "bad_date": "refused", "budget": "accepted",
                                "no_budget": "accepted", "zero_budget": "refused", "negative_budget": "refused",
                                "nan_budget": "refused", "text_budget": "refused"}
