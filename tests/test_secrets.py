"""Passwords and API secrets stay out of messages and reprs."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import psycopg2
import pytest

from openbell.adapters.alpaca.config import AlpacaConfig
from openbell.calendar import session
from openbell.dberrors import redact
from openbell.dberrors import unavailable as _unavailable
from openbell.params import RunParams
from openbell.pg.server import EmbeddedPostgres
from openbell.runtime.airflow import AirflowStack
from openbell.runtime.rehearsal import Rehearsal
from openbell.sim.simulator import SimConfig
from openbell.sim.testing import SimProcess
from openbell.workflow.steps import StepContext

SECRET = "Zq7-secret"
URL = f"postgresql+psycopg2://trader:{SECRET}@db.local:5432/openbell"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (URL, "postgresql+psycopg2://trader:***@db.local:5432/openbell"),
        (f"postgresql://trader@db.local/x?password={SECRET}", "postgresql://trader@db.local/x?password=***"),
        (
            f"postgresql://trader@db.local/x?sslmode=require&password={SECRET}&connect_timeout=5",
            "postgresql://trader@db.local/x?sslmode=require&password=***&connect_timeout=5",
        ),
        (f"postgresql://trader:{SECRET}@db.local/x?password={SECRET}", "postgresql://trader:***@db.local/x?password=***"),
        (f"host=db.local password={SECRET} dbname=x", "host=db.local password=*** dbname=x"),
        (f"host=db.local password = {SECRET}", "host=db.local password = ***"),
        (f"host=db.local password='{SECRET} \\' x' dbname=x", "host=db.local password=*** dbname=x"),
        (f"password={SECRET}", "password=***"),
        (f"user=trader password={SECRET}&x host=h", "user=trader password=*** host=h"),
        (f"not a url: garbage://u:{SECRET}@ here", "not a url: garbage://u:***@ here"),
        (f"garbage://u:p@{SECRET}@host/x", "garbage://u:***@host/x"),
        ("postgresql://trader@db.local/x?sslmode=require", "postgresql://trader@db.local/x?sslmode=require"),
        ("host=db.local dbname=x", "host=db.local dbname=x"),
    ],
)
def test_redact_hides_url_query_and_dsn_passwords(text: str, expected: str) -> None:
    assert redact(text) == expected


def _operational(message: str) -> psycopg2.OperationalError:
    return psycopg2.OperationalError(message)


@pytest.mark.parametrize("password", ["e", "o", "t", "port", "1"])
def test_unavailable_leaves_the_reason_intact_for_short_passwords(password: str) -> None:
    url = f"postgresql+psycopg2://trader:{password}@127.0.0.1:1/openbell"
    reason = 'connection to server at "127.0.0.1", port 1 failed: Connection refused'
    message = str(_unavailable(url, _operational(reason + "\n\tIs the server running on that host?")))
    assert message == f"cannot connect to Postgres at postgresql+psycopg2://trader:***@127.0.0.1:1/openbell: {reason}"


def test_unavailable_hides_passwords_the_reason_repeats() -> None:
    dsn = str(_unavailable(URL, _operational(f'invalid dsn: host=db.local password={SECRET} port="x"')))
    assert SECRET not in dsn and 'password=*** port="x"' in dsn
    url = str(_unavailable(URL, _operational(f"could not parse {URL}")))
    assert SECRET not in url and url.endswith("could not parse postgresql+psycopg2://trader:***@db.local:5432/openbell")


def test_sim_config_repr_hides_the_secret(tmp_path: Path) -> None:
    cfg = SimConfig(session_date=date(2025, 11, 20), data_dir=tmp_path, api_key="key-id", secret_key=SECRET)
    assert SECRET not in repr(cfg) and "2025" in repr(cfg)


def _stack(tmp_path: Path) -> AirflowStack:
    alpaca = AlpacaConfig(key_id="key-id", secret_key=SECRET)
    meta = URL.replace("/openbell", "/airflow")
    return AirflowStack(tmp_path / "airflow", meta, URL, alpaca, api_port=1,
                        extra_env={"APCA_API_SECRET_KEY": SECRET, "OPENBELL_DATABASE_URL": URL})


def test_stack_and_rehearsal_reprs_hide_urls_passwords_and_secrets(tmp_path: Path) -> None:
    stack = _stack(tmp_path)
    text = repr(stack)
    assert SECRET not in text and "trader:***@db.local:5432/airflow" in text and "APCA_API_SECRET_KEY" in text
    sim = SimProcess(data_dir=tmp_path / "sim", secret=SECRET)
    day = Rehearsal(stack, sim, EmbeddedPostgres(tmp_path / "pg"), URL, run_id="run-1")
    text = repr(day)
    assert SECRET not in text and "run-1" in text


def test_step_context_repr_hides_the_state_url() -> None:
    sess = session(date(2025, 11, 20))
    assert sess is not None
    ctx = StepContext(session=sess, params=RunParams(), run_id="r", attempt=1,
                      run_type="manual", config_factory=lambda: AlpacaConfig("key-id", SECRET), state_url=URL)
    assert SECRET not in repr(ctx)
