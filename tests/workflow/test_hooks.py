"""The hooks that own openbell's connections: the Alpaca account (against a real simulator) and the state
database, and the provider entry point through which Airflow finds the ``alpaca`` connection type."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import pytest
from sqlalchemy import text

from openbell.adapters.alpaca.config import AlpacaConfig
from openbell.sim.testing import SimProcess
from openbell.workflow.hooks import STATE_CONN_ID, AlpacaHook, StateDbHook
from openbell.workflow.provider import get_provider_info

SECRET = "Zq7-hook-secret"
KEY = "hook-key-id"
AIRFLOW_SITE = Path(__import__("airflow").__file__).parent


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimProcess]:
    with SimProcess(date="2025-11-20", speed=1, start="11:00", key=KEY, secret=SECRET,
                    data_dir=tmp_path_factory.mktemp("sim")) as s:
        yield s


def _alpaca_conn(monkeypatch: pytest.MonkeyPatch, extra: dict[str, Any], *, login: str = KEY,
                 password: str = SECRET, conn_id: str = "alpaca_default") -> None:
    conn = {"conn_type": "alpaca", "login": login, "password": password, "extra": extra}
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A fresh process's environment: no connections or database URL of ours inherited."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "OPENBELL_DATABASE_URL"))}
    base.update(AIRFLOW_HOME=str(tmp_path / "airflow"), PYTHONPATH=str(tmp_path), **extra)
    return base


# -- AlpacaHook --------------------------------------------------------------------------------------


def test_the_hook_builds_the_config_of_its_connection(sim: SimProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    _alpaca_conn(monkeypatch, {"simulator_url": sim.base_url})
    config = AlpacaHook().get_conn()
    assert isinstance(config, AlpacaConfig)
    assert config == sim.config()
    assert config.simulated and config.trading_url == sim.base_url and config.conn_id == "alpaca_default"
    assert AlpacaHook.default_conn_name == "alpaca_default" and AlpacaHook.conn_name_attr == "alpaca_conn_id"
    # another connection by its id, as Airflow's get_hook passes it
    _alpaca_conn(monkeypatch, {"paper": "false", "feed": "sip"}, conn_id="alpaca_live")
    other = AlpacaHook(**{AlpacaHook.conn_name_attr: "alpaca_live"}).get_conn()
    assert (other.paper, other.feed, other.conn_id, other.simulated) == (False, "sip", "alpaca_live", False)


def test_test_connection_names_the_paper_account_and_its_status(sim: SimProcess,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    _alpaca_conn(monkeypatch, {"simulator_url": sim.base_url})
    ok, message = AlpacaHook().test_connection()
    assert ok, message
    assert "paper account" in message and "status ACTIVE" in message and sim.base_url in message
    assert "a local simulator" in message
    assert SECRET not in message and KEY not in message


def test_a_live_flagged_connection_is_reported_as_live(sim: SimProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    """paper=false names the live account (the simulator stands in for Alpaca's trading URL here), and the
    endpoint says it is a local one, not Alpaca's live host."""
    _alpaca_conn(monkeypatch, {"paper": False, "trading_url": sim.base_url})
    ok, message = AlpacaHook().test_connection()
    assert ok, message
    assert "live account" in message and "status ACTIVE" in message and "simulator" not in message
    assert f"at {sim.base_url} (a local endpoint, not Alpaca's)" in message


class FakeTrading:
    """Stands in for alpaca-py's TradingClient: no request leaves this machine."""

    sent: ClassVar[list[str]] = []

    def __init__(self, config: AlpacaConfig) -> None:
        self.config = config

    def get_account(self) -> Any:
        FakeTrading.sent.append("get_account")
        return SimpleNamespace(account_number="PA123", status=SimpleNamespace(value="ACTIVE"))


@pytest.fixture
def fake_trading(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    FakeTrading.sent = []
    monkeypatch.setattr(AlpacaConfig, "trading_client", lambda self, raw_data=False: FakeTrading(self))
    return FakeTrading.sent


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        ({}, "paper account PA123 at https://paper-api.alpaca.markets (Alpaca's paper endpoint)"),
        ({"paper": "true", "trading_url": "HTTPS://Paper-API.alpaca.markets/"},
         "paper account PA123 at HTTPS://Paper-API.alpaca.markets/ (Alpaca's paper endpoint)"),
        ({"paper": False}, "live account PA123 at https://api.alpaca.markets (Alpaca's live endpoint: real money)"),
        ({"paper": "false", "trading_url": "https://api.alpaca.markets:443/"},
         "live account PA123 at https://api.alpaca.markets:443/ (Alpaca's live endpoint: real money)"),
        ({"paper": True, "trading_url": "https://broker.example.net/alpaca"},
         "paper account PA123 at https://broker.example.net/alpaca (not an Alpaca host: its account is whatever"),
        ({"simulator_url": "http://simulator:5055"},
         "paper account PA123 of the openbell simulator at http://simulator:5055 (a simulator on another host)"),
    ],
)
def test_test_connection_says_which_endpoint_it_reached(monkeypatch: pytest.MonkeyPatch, fake_trading: list[str],
                                                         extra: dict[str, Any], says: str) -> None:
    _alpaca_conn(monkeypatch, extra)
    ok, message = AlpacaHook().test_connection()
    assert ok, message
    assert says in message and message.endswith(": status ACTIVE"), message
    assert fake_trading == ["get_account"] and SECRET not in message and KEY not in message


def test_the_url_shown_by_test_connection_carries_no_credentials(monkeypatch: pytest.MonkeyPatch,
                                                                  fake_trading: list[str]) -> None:
    _alpaca_conn(monkeypatch, {"trading_url": f"https://{KEY}:{SECRET}@paper-api.alpaca.markets/?token=tok-987654"})
    ok, message = AlpacaHook().test_connection()
    assert ok and "at https://***@paper-api.alpaca.markets/ (Alpaca's paper endpoint)" in message, message
    assert SECRET not in message and KEY not in message and "tok-987654" not in message


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        ({"paper": True, "trading_url": "https://API.alpaca.markets/"},
         "'paper' is true but trading_url 'https://API.alpaca.markets/' is Alpaca's live host api.alpaca.markets"),
        ({"trading_url": "api.alpaca.markets"}, "'paper' is true but trading_url 'api.alpaca.markets'"),
        ({"paper": "false", "trading_url": "https://paper-api.alpaca.markets"},
         "'paper' is false but trading_url 'https://paper-api.alpaca.markets' is Alpaca's paper host"),
    ],
)
def test_a_paper_flag_that_disagrees_with_the_trading_url_fails_the_test_unsent(
    monkeypatch: pytest.MonkeyPatch, fake_trading: list[str], extra: dict[str, Any], says: str
) -> None:
    _alpaca_conn(monkeypatch, extra)
    ok, message = AlpacaHook().test_connection()
    assert ok is False and says in message and "'alpaca_default'" in message, message
    assert fake_trading == [] and SECRET not in message and KEY not in message
    with pytest.raises(ValueError, match="nothing was sent"):
        AlpacaHook().get_conn()


@pytest.mark.parametrize(("login", "password"), [(KEY, "wrong-" + SECRET), ("wrong-" + KEY, SECRET)])
def test_wrong_credentials_fail_without_the_secret_in_the_message(
    sim: SimProcess, monkeypatch: pytest.MonkeyPatch, login: str, password: str
) -> None:
    _alpaca_conn(monkeypatch, {"simulator_url": sim.base_url}, login=login, password=password)
    ok, message = AlpacaHook().test_connection()
    assert ok is False
    assert "refused the credentials" in message and "'alpaca_default'" in message, message
    assert SECRET not in message and password not in message and login not in message


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        ({"paper": "flase"}, "extra field 'paper' must be true or false"),
        ({"feed": "otc"}, "feed must be 'iex' or 'sip'"),
    ],
)
def test_a_refused_extra_fails_the_test_naming_the_field(monkeypatch: pytest.MonkeyPatch, extra: dict[str, Any],
                                                         says: str) -> None:
    _alpaca_conn(monkeypatch, extra)
    ok, message = AlpacaHook().test_connection()
    assert ok is False and says in message and SECRET not in message


def test_missing_credentials_and_missing_connections_fail_the_test(monkeypatch: pytest.MonkeyPatch) -> None:
    _alpaca_conn(monkeypatch, {}, password="")
    ok, message = AlpacaHook().test_connection()
    assert ok is False and "no key id (login) or secret (password)" in message
    ok, message = AlpacaHook(alpaca_conn_id="nowhere").test_connection()
    assert ok is False and "nowhere" in message


def test_the_connection_form_relabels_key_id_and_secret() -> None:
    import jsonschema

    behaviour = AlpacaHook.get_ui_field_behaviour()
    schema = json.loads((AIRFLOW_SITE / "customized_form_field_behaviours.schema.json").read_text())
    jsonschema.validate(behaviour, schema)
    assert behaviour["relabeling"] == {"login": "Key ID", "password": "Secret"}
    assert "extra" not in behaviour["hidden_fields"] and "login" not in behaviour["hidden_fields"]
    assert AlpacaHook.get_connection_form_widgets() == {}  # paper/feed/simulator_url live in the JSON extra


# -- the provider entry point --------------------------------------------------------------------------


def test_the_provider_info_names_the_hook_and_passes_airflows_schema() -> None:
    import jsonschema

    info = get_provider_info()
    jsonschema.validate(info, json.loads((AIRFLOW_SITE / "provider_info.schema.json").read_text()))
    (conn_type,) = info["connection-types"]
    module, name = conn_type["hook-class-name"].rsplit(".", 1)
    assert getattr(__import__(module, fromlist=[name]), name) is AlpacaHook
    assert conn_type["connection-type"] == AlpacaHook.conn_type == "alpaca"
    assert conn_type["hook-name"] == AlpacaHook.hook_name
    found = [ep for ep in entry_points(group="apache_airflow_provider") if ep.dist and ep.dist.name == "openbell"]
    assert [ep.value for ep in found] == ["openbell.workflow.provider:get_provider_info"], (
        "openbell's provider entry point is not installed: run `make venv` (pip install --no-deps -e .)"
    )


TEST_BUTTON = """
import json, os, sys
from airflow.models.connection import Connection
from airflow.providers_manager import ProvidersManager

pm = ProvidersManager()
meta = [m for m in pm.iter_connection_type_hook_ui_metadata() if m.connection_type == "alpaca"]
# what the api-server's POST /api/v2/connections/test does: a transient env connection, then test_connection()
conn = Connection(conn_id="transient_x", conn_type="alpaca", login=sys.argv[1], password=sys.argv[2],
                  extra=json.dumps({"simulator_url": sys.argv[3]}))
os.environ["AIRFLOW_CONN_TRANSIENT_X"] = conn.get_uri()
print(json.dumps({"hook": meta[0].hook_class_name if meta else None,
                  "behaviour": meta[0].field_behaviour if meta else None,
                  "result": list(conn.test_connection())}))
"""


@pytest.mark.parametrize("secret", [SECRET, "wrong-" + SECRET])
def test_airflows_test_connection_button_reaches_the_hook(sim: SimProcess, tmp_path: Path, secret: str) -> None:
    got = subprocess.run([sys.executable, "-c", TEST_BUTTON, KEY, secret, sim.base_url], env=_env(tmp_path),
                         capture_output=True, text=True, timeout=180)
    assert got.returncode == 0, got.stderr[-3000:]
    out = json.loads(got.stdout.strip().splitlines()[-1])
    assert out["hook"] == "openbell.workflow.hooks.AlpacaHook"
    assert out["behaviour"]["relabeling"] == {"login": "Key ID", "password": "Secret"}
    ok, message = out["result"]
    assert ok is (secret == SECRET), message
    assert ("paper account" in message) if ok else ("refused the credentials" in message)
    assert secret not in message


# -- StateDbHook ---------------------------------------------------------------------------------------


@pytest.fixture
def no_state_db(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.delenv("AIRFLOW_CONN_OPENBELL_DB", raising=False)
    monkeypatch.delenv("OPENBELL_DATABASE_URL", raising=False)
    return monkeypatch


def test_the_state_database_is_the_connection_whenever_it_is_defined(no_state_db: pytest.MonkeyPatch) -> None:
    no_state_db.setenv("OPENBELL_DATABASE_URL", "postgresql+psycopg2://u:pw@127.0.0.1:5/fallback")
    no_state_db.setenv("AIRFLOW_CONN_OPENBELL_DB", "postgres://u:pw@127.0.0.1:6/conn")
    assert StateDbHook().get_uri() == "postgresql+psycopg2://u:pw@127.0.0.1:6/conn"
    assert StateDbHook.default_conn_name == STATE_CONN_ID == "openbell_db"
    assert (StateDbHook.conn_name_attr, StateDbHook.conn_type) == ("openbell_db_conn_id", "postgres")
    no_state_db.setenv("AIRFLOW_CONN_OTHER_DB", "postgresql://u:pw@127.0.0.1:7/other")
    assert StateDbHook(openbell_db_conn_id="other_db").get_uri() == "postgresql+psycopg2://u:pw@127.0.0.1:7/other"


def test_the_environment_stands_in_only_for_a_connection_that_is_not_defined(
    no_state_db: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(RuntimeError, match=r"define the Airflow connection 'openbell_db' or OPENBELL_DATABASE_URL"):
        StateDbHook().get_uri()
    no_state_db.setenv("OPENBELL_DATABASE_URL", "postgresql+psycopg2://u:pw@127.0.0.1:5/fallback")
    assert StateDbHook().get_uri() == "postgresql+psycopg2://u:pw@127.0.0.1:5/fallback"


DENYING = """
from airflow.sdk.exceptions import AirflowSecretsBackendAccessDenied
from airflow.secrets import BaseSecretsBackend

class Denying(BaseSecretsBackend):
    def get_connection(self, conn_id):
        raise AirflowSecretsBackendAccessDenied(f"access to {conn_id} denied")
"""


def test_a_refused_lookup_never_falls_back_to_the_environment(tmp_path: Path) -> None:
    (tmp_path / "denying_backend.py").write_text(textwrap.dedent(DENYING))
    code = "from openbell.workflow.hooks import StateDbHook; print(StateDbHook().get_uri())"
    got = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env=_env(tmp_path, AIRFLOW__SECRETS__BACKEND="denying_backend.Denying",
                                  OPENBELL_DATABASE_URL="postgresql+psycopg2://u:pw@127.0.0.1:5/fallback"))
    assert got.returncode != 0 and "fallback" not in got.stdout and "denied" in got.stderr


def test_get_conn_is_an_engine_on_the_connections_database(state_url: str, no_state_db: pytest.MonkeyPatch) -> None:
    from sqlalchemy.engine import make_url

    url = make_url(state_url)
    no_state_db.setenv("AIRFLOW_CONN_OPENBELL_DB", url.set(drivername="postgresql").render_as_string(False))
    no_state_db.setenv("OPENBELL_DATABASE_URL", "postgresql+psycopg2://u:pw@127.0.0.1:5/fallback")
    engine = StateDbHook().get_conn()
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT current_database()")).scalar() == url.database
    finally:
        engine.dispose()


def test_the_trading_view_reads_the_state_database_through_the_hook_not_the_steps(tmp_path: Path) -> None:
    code = ("import sys; from openbell.ui import app; print(app._state_url());"
            " print(sorted(m for m in sys.modules if m.startswith('openbell.workflow')))")
    got = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env=_env(tmp_path, AIRFLOW_CONN_OPENBELL_DB="postgresql://u:pw@127.0.0.1:6/conn"))
    assert got.returncode == 0, got.stderr[-3000:]
    url, modules = got.stdout.strip().splitlines()[-2:]
    assert url == "postgresql+psycopg2://u:pw@127.0.0.1:6/conn"
    assert "openbell.workflow.steps" not in modules and "openbell.workflow.hooks" in modules
