"""The notifiers in a real Airflow: ``dag.test()`` runs ``alerts_dag`` (failing, retrying, liquidating) in a
fresh process whose only alert configuration is ``AIRFLOW_CONN_OPENBELL_NOTIFY``; real receivers listen."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from alert_helpers import CONN_ENV, HttpReceiver, SmtpReceiver, connection, free_port
from sqlalchemy import insert, text

from dates import SESSION as DAY
from openbell.store.db import make_engine
from openbell.store.models import Decision, EquityPoint, Fill, Order
from openbell.store.versions import add_params

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def airflow_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An Airflow home with its metadata database migrated, DAGs from this directory."""
    home = tmp_path_factory.mktemp("airflow")
    out = subprocess.run([str(Path(sys.executable).with_name("airflow")), "db", "migrate"],
                         env=_env(home), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return home


def _env(home: Path, **extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "OPENBELL_DATABASE_URL", "ALERTS_"))}
    base.update(AIRFLOW_HOME=str(home), AIRFLOW__CORE__LOAD_EXAMPLES="False",
                AIRFLOW__CORE__DAGS_FOLDER=str(HERE), **extra)
    return base


def _run_day(home: Path, state_url: str, conn: str | None, **flags: str) -> dict[str, Any]:
    extra = {"OPENBELL_DATABASE_URL": state_url, **flags}
    if conn is not None:
        extra[CONN_ENV] = conn
    out = subprocess.run([sys.executable, str(HERE / "alerts_dag.py")], env=_env(home, **extra),
                         capture_output=True, text=True, timeout=300, cwd=home)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def _seed_trading(state_url: str) -> int:
    """A traded session: equity 100000 -> 100123.45, three orders (one rejected), two fills, version v1."""
    engine = make_engine(state_url)
    version = add_params(engine, "momentum", {"lookback": 15}, session_date=DAY)
    at = datetime(2025, 11, 20, 15, tzinfo=UTC)
    order = {"session_date": DAY, "symbol": "TQQQ", "qty": Decimal(10), "status": "filled",
             "filled_qty": Decimal(10)}
    with engine.begin() as conn:
        conn.execute(insert(Decision), [{"session_date": DAY, "seq": 1, "ts": at, "targets": {"TQQQ": 0.5},
                                         "param_version_id": version.id}])
        conn.execute(insert(Order), [
            {**order, "client_order_id": "ob-1-buy", "side": "buy"},
            {**order, "client_order_id": "ob-2-sell", "side": "sell"},
            {**order, "client_order_id": "ob-3-buy", "side": "buy", "status": "rejected", "filled_qty": 0,
             "reject_reason": "insufficient buying power"},
        ])
        conn.execute(insert(Fill), [
            {"execution_id": "x1", "client_order_id": "ob-1-buy", "session_date": DAY, "symbol": "TQQQ",
             "side": "buy", "qty": Decimal(10), "price": Decimal("50.00"), "ts": at},
            {"execution_id": "x2", "client_order_id": "ob-2-sell", "session_date": DAY, "symbol": "TQQQ",
             "side": "sell", "qty": Decimal(10), "price": Decimal("62.35"), "ts": at},
        ])
        conn.execute(insert(EquityPoint), [{"session_date": DAY, "ts": at, "equity": 100000.0},
                                           {"session_date": DAY, "ts": at.replace(hour=20), "equity": 100123.45}])
    return int(version.id)


def _journal(state_url: str) -> list[tuple[str, str, str]]:
    with make_engine(state_url).connect() as conn:
        rows = conn.execute(text("SELECT kind, payload->>'kind', payload->>'key' FROM events ORDER BY id"))
        return [tuple(r) for r in rows]


@pytest.mark.long
def test_a_failing_step_alerts_once_and_the_day_ends_with_its_summary(
        airflow_home: Path, state_url: str, http_receiver: HttpReceiver, smtp_receiver: SmtpReceiver) -> None:
    version = _seed_trading(state_url)
    result = _run_day(airflow_home, state_url, connection(http_receiver.url, smtp_receiver.url),
                      ALERTS_CHECK_FAIL="1")
    assert result["states"] == {"download": "failed", "eod_liquidate": "success"}
    run_id = result["run_id"]

    # download failed, was retried twice and failed again: three deliveries of one event, one alert
    step, summary = http_receiver.received
    assert step["type"] == "failure" and step["title"] == "openbell 2025-11-20: download failed, retrying"
    assert "attempt 1 of 3" in step["message"] and "RuntimeError: the bars source is down" in step["message"]
    assert summary["type"] == "success"
    assert summary["title"] == "openbell 2025-11-20: P&L +123.45, flat at the close: yes"
    body = summary["message"]
    for figure in ("P&L: +123.45 (equity 100000.00 -> 100123.45)", "Cash flow from fills: +123.50",
                   "Orders: 3 (2 filled), fills: 2, rejections: 1", "Flat at the close: yes",
                   f"Parameter version: v{version}", "download: failed, 3 attempt(s) - RuntimeError: the bars source",
                   "eod_liquidate: success, 1 attempt(s)"):
        assert figure in body, (figure, body)
    # the same two alerts by mail
    assert [m["Subject"] for m in smtp_receiver.messages] == [step["title"], summary["title"]]
    assert "Orders: 3 (2 filled), fills: 2, rejections: 1" in smtp_receiver.messages[1].get_body().get_content()
    assert _journal(state_url) == [("alert_sent", "step_failed", f"alerts_check/{run_id}/download"),
                                   ("alert_sent", "eod_summary", f"alerts_check/{run_id}")]


@pytest.mark.long
def test_an_account_not_flat_at_the_close_is_alerted(airflow_home: Path, state_url: str,
                                                      http_receiver: HttpReceiver) -> None:
    result = _run_day(airflow_home, state_url, connection(http_receiver.url), ALERTS_CHECK_NOT_FLAT="1")
    assert result["states"] == {"download": "success", "eod_liquidate": "failed"}
    titles = [m["title"] for m in http_receiver.received]
    assert titles == ["openbell 2025-11-20: eod_liquidate failed, retrying",
                      "openbell 2025-11-20: P&L n/a (no equity recorded), flat at the close: NO",
                      "openbell 2025-11-20: account NOT flat at the close"]
    not_flat = http_receiver.received[2]["message"]
    assert "eod_liquidate failed after 2 attempt(s)" in not_flat and "Positions left: {'TQQQ': 12.0}" in not_flat
    assert "Open orders left: 1" in not_flat and "account not flat" in not_flat


@pytest.mark.long
def test_a_dead_channel_never_fails_a_step(airflow_home: Path, state_url: str) -> None:
    result = _run_day(airflow_home, state_url, connection(f"json://127.0.0.1:{free_port()}/"), ALERTS_CHECK_FAIL="1")
    assert result["states"] == {"download": "failed", "eod_liquidate": "success"}
    # every delivery was tried (a failed send may be retried) and journaled as failed
    kinds = {(kind, alert_kind) for kind, alert_kind, _ in _journal(state_url)}
    assert kinds == {("alert_failed", "step_failed"), ("alert_failed", "eod_summary")}


def test_trading_day_wires_the_notifiers(tmp_path: Path) -> None:
    """Every task of the real DAG alerts on failure and retry; eod_liquidate sends the end-of-day summary."""
    script = (
        "import json\n"
        "from airflow.dag_processing.dagbag import DagBag\n"
        f"bag = DagBag({str(HERE.parents[1] / 'dags')!r})\n"
        "dag = bag.dags['trading_day']\n"
        "names = lambda cbs: sorted(type(c).__name__ for c in (cbs or []))\n"
        "print(json.dumps({'errors': list(bag.import_errors), 'tasks': {t.task_id: [names(t.on_failure_callback),"
        " names(t.on_retry_callback), names(t.on_success_callback)] for t in dag.tasks}}))\n"
    )
    env = _env(tmp_path, AIRFLOW__CORE__PLUGINS_FOLDER=str(HERE.parents[1] / "plugins"))
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    info = json.loads(out.stdout.strip().splitlines()[-1])
    assert info["errors"] == []
    tasks = info["tasks"]
    assert tasks.pop("eod_liquidate") == [["EndOfDayAlert", "StepAlert"], ["StepAlert"], ["EndOfDayAlert"]]
    assert tasks and all(cbs == [["StepAlert"], ["StepAlert"], []] for cbs in tasks.values()), tasks
