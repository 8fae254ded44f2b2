"""One trading_day_<name> and trading_control_<name> per account of the accounts file, as Airflow's DagBag loads
them; a refused account shown as an import error beside the others; each task on its DAG's account."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from dates import SESSION, at_et
from openbell.accounts import account_of_dag
from openbell.store.scope import account_of
from openbell.workflow.accounts import AccountRefused, run_account

ROOT = Path(__file__).resolve().parents[2]
SIM = {"simulator_url": "http://127.0.0.1:9"}


def _conn(key: str) -> str:
    return json.dumps({"conn_type": "alpaca", "login": key, "password": "not-a-secret-" + key, "extra": SIM})


CONNECTIONS = {"AIRFLOW_CONN_ALPACA_ALPHA": _conn("key-a"), "AIRFLOW_CONN_ALPACA_BETA": _conn("key-b"),
               "AIRFLOW_CONN_ALPACA_BETA_TWIN": _conn("key-b")}


def _bag(tmp_path: Path, accounts: str | None) -> dict[str, Any]:
    """The DAG ids, import errors and a few params and tags of ``dags/`` parsed with ``accounts`` as the file."""
    script = textwrap.dedent(f"""
        import json
        from airflow.dag_processing.dagbag import DagBag
        bag = DagBag({str(ROOT / 'dags')!r})
        print(json.dumps({{
            "dags": sorted(bag.dags),
            "errors": {{k.rsplit('/', 1)[-1]: str(v) for k, v in bag.import_errors.items()}},
            "params": {{d: {{k: bag.dags[d].params[k] for k in ("strategy", "max_order_notional", "universe")}}
                       for d in bag.dags if d.startswith("trading_day")}},
            "tags": {{d: sorted(bag.dags[d].tags) for d in bag.dags}},
            "clocks": {{d: sorted({{t.conn_id for t in bag.dags[d].tasks if hasattr(t, "conn_id")}})
                       for d in bag.dags if d.startswith("trading_day")}},
        }}))
        """)
    env = {"AIRFLOW_HOME": str(tmp_path / "home"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
           "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"), "PATH": "/usr/bin:/bin",
           "PYTHONPATH": str(ROOT / "tests" / "strategies"), **CONNECTIONS}
    if accounts is not None:
        path = tmp_path / "accounts.yaml"
        path.write_text(textwrap.dedent(accounts))
        env["OPENBELL_ACCOUNTS"] = str(path)
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


TWO = """
    accounts:
      - name: alpha
        conn_id: alpaca_alpha
      - name: beta
        conn_id: alpaca_beta
        strategy: ob_example.laggards:LeadersAndLaggards
        universe: [SPY, QQQ]
        max_order_notional: 5000
    """


def test_without_an_accounts_file_there_is_one_trading_day_and_one_trading_control(tmp_path: Path) -> None:
    bag = _bag(tmp_path, None)
    assert bag["dags"] == ["trading_control", "trading_day"] and bag["errors"] == {}
    assert bag["tags"]["trading_day"] == ["openbell", "trading"]
    assert bag["clocks"] == {"trading_day": ["alpaca_default"]}


def test_each_account_has_its_own_day_and_controls_with_its_run_defaults(tmp_path: Path) -> None:
    bag = _bag(tmp_path, TWO)
    assert bag["errors"] == {}
    assert bag["dags"] == ["trading_control_alpha", "trading_control_beta", "trading_day_alpha", "trading_day_beta"]
    assert bag["tags"]["trading_day_beta"] == ["account:beta", "openbell", "trading"]
    assert bag["tags"]["trading_control_alpha"] == ["account:alpha", "control", "openbell", "trading"]
    alpha, beta = bag["params"]["trading_day_alpha"], bag["params"]["trading_day_beta"]
    assert beta == {"strategy": "ob_example.laggards:LeadersAndLaggards", "max_order_notional": 5000.0,
                    "universe": ["SPY", "QQQ"]}
    assert alpha["strategy"] != beta["strategy"] and alpha["max_order_notional"] is None
    # the waits for the open, 14:30 and 15:58 follow the market clock of the account's own connection
    assert bag["clocks"] == {"trading_day_alpha": ["alpaca_alpha"], "trading_day_beta": ["alpaca_beta"]}


@pytest.mark.parametrize(("extra", "refused", "field"), [
    ("  - name: gamma\n    conn_id: alpaca_nowhere\n", ["gamma"], "no Airflow connection 'alpaca_nowhere'"),
    ("  - name: gamma\n    conn_id: alpaca_beta_twin\n", ["beta", "gamma"], "holds the key id of"),
    ("  - name: alpha\n    conn_id: alpaca_beta_twin\n", ["alpha", "beta"], "is also the name of"),
    ("  - name: gamma\n    conn_id: alpaca_alpha\n    max_gross: -1\n", ["alpha", "gamma"], "'max_gross'"),
    ("  - name: Bad Name\n    conn_id: alpaca_nowhere\n", [], "'name': 'Bad Name' is not lowercase letters"),
])
def test_a_refused_account_is_an_import_error_naming_the_file_account_and_field_and_the_others_load(
        tmp_path: Path, extra: str, refused: list[str], field: str) -> None:
    bag = _bag(tmp_path, TWO.rstrip() + "\n" + textwrap.indent(extra, "    "))
    for dag_file in ("trading_day.py", "trading_control.py"):
        error = bag["errors"][dag_file]
        assert str(tmp_path / "accounts.yaml") in error and field in error
        for name in refused:
            assert f"account {name!r}" in error
    loaded = {d.rsplit("_", 1)[-1] for d in bag["dags"]}
    assert loaded == {"alpha", "beta"} - set(refused)
    assert not any(f"_{name}" in d for d in bag["dags"] for name in refused)


def test_an_accounts_file_refused_as_a_whole_loads_no_day_at_all(tmp_path: Path) -> None:
    bag = _bag(tmp_path, "accounts: [unclosed\n")
    assert bag["dags"] == []
    assert "not YAML" in bag["errors"]["trading_day.py"] and "not YAML" in bag["errors"]["trading_control.py"]


def _context(dag_id: str) -> dict[str, Any]:
    return {"dag_run": SimpleNamespace(dag_id=dag_id, run_id="manual__1", logical_date=at_et("09:00"),
                                       run_after=at_et("09:00"), run_type="manual"),
            "ti": SimpleNamespace(try_number=1), "params": {}}


@pytest.fixture
def accounts_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "accounts.yaml"
    path.write_text(textwrap.dedent(TWO))
    for name, value in CONNECTIONS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("OPENBELL_ACCOUNTS", str(path))
    monkeypatch.setenv("OPENBELL_DATABASE_URL", "postgresql+psycopg2://openbell:pw@127.0.0.1:9/state")
    return path


def test_a_task_trades_its_dags_account_with_the_accounts_connection_and_state(accounts_env: Path) -> None:
    from openbell.workflow.steps import from_airflow

    ctx = from_airflow(_context("trading_day_beta"))
    assert ctx.session.date == SESSION
    assert account_of(ctx.state_url) == "beta" and ctx.config.key_id == "key-b"
    assert account_of(from_airflow(_context("trading_day_alpha")).state_url) == "alpha"


def test_a_task_of_an_account_no_longer_in_the_file_is_refused_before_anything_is_done(
        accounts_env: Path) -> None:
    accounts_env.write_text("accounts:\n  - name: alpha\n    conn_id: alpaca_alpha\n")
    with pytest.raises(AccountRefused, match="account 'beta' is not in"):
        run_account(_context("trading_day_beta"))
    accounts_env.write_text("accounts:\n  - name: beta\n    conn_id: alpaca_nowhere\n")
    with pytest.raises(AccountRefused, match=r"account 'beta' is refused.*no Airflow connection 'alpaca_nowhere'"):
        run_account(_context("trading_control_beta"))


def test_a_named_accounts_dag_without_an_accounts_file_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENBELL_ACCOUNTS", raising=False)
    assert run_account(_context("trading_day")) is None
    with pytest.raises(AccountRefused, match="names no accounts file"):
        run_account(_context("trading_day_alpha"))


@pytest.mark.parametrize(("dag_id", "name"), [("trading_day", None), ("trading_control", None),
                                               ("trading_day_alpha", "alpha"), ("trading_control_b_2", "b_2")])
def test_the_account_a_dag_id_names(dag_id: str, name: str | None) -> None:
    assert account_of_dag(dag_id) == name


def test_a_dag_of_ones_own_that_names_no_account_trades_the_default_account() -> None:
    assert account_of_dag("example_dag") is None and run_account(_context("example_dag")) is None
