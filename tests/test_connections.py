"""Connection settings: the account and the state database are never chosen by accident."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from openbell.adapters.alpaca.config import LIVE_TRADING_URL, PAPER_TRADING_URL, AlpacaConfig


@pytest.mark.parametrize(("paper", "expected"), [(True, True), (False, False), ("true", True), (" False ", False)])
def test_paper_accepts_a_boolean_or_true_false(paper: Any, expected: bool) -> None:
    config = AlpacaConfig.from_extra("key", "secret", {"paper": paper})
    assert config.paper is expected
    client = config.trading_client()
    assert client._base_url == (PAPER_TRADING_URL if expected else LIVE_TRADING_URL)


def test_paper_is_the_default() -> None:
    assert AlpacaConfig.from_extra("key", "secret", {}).paper is True


@pytest.mark.parametrize("paper", ["flase", None, "paper", "0", "no", "", 0, 1, [], ["false"], {"x": 1}, 0.0])
def test_anything_else_is_refused_naming_the_field(paper: Any) -> None:
    with pytest.raises(ValueError, match=r"connection 'alpaca_default': extra field 'paper' must be true or false"):
        AlpacaConfig.from_extra("key", "secret", {"paper": paper})


def _state_url(env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """``steps.state_url()`` in a fresh process (Airflow reads its secrets settings once)."""
    code = "from openbell.workflow.steps import state_url; print(state_url())"
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "OPENBELL_DATABASE_URL"))}
    base.update(AIRFLOW_HOME=str(tmp_path / "airflow"), PYTHONPATH=str(tmp_path), **env)
    return subprocess.run([sys.executable, "-c", code], env=base, capture_output=True, text=True, timeout=120)


def test_state_database_comes_from_the_connection_else_the_environment(tmp_path: Path) -> None:
    fallback = "postgresql+psycopg2://user:secret-pw@127.0.0.1:5/fallback"
    got = _state_url({"AIRFLOW_CONN_OPENBELL_DB": "postgresql://user:secret-pw@127.0.0.1:6/conn",
                      "OPENBELL_DATABASE_URL": fallback}, tmp_path)
    assert got.returncode == 0, got.stderr
    assert got.stdout.strip().splitlines()[-1] == "postgresql+psycopg2://user:secret-pw@127.0.0.1:6/conn"
    absent = _state_url({"OPENBELL_DATABASE_URL": fallback}, tmp_path)
    assert absent.returncode == 0, absent.stderr
    assert absent.stdout.strip().splitlines()[-1] == fallback


def test_a_failing_connection_lookup_never_falls_back(tmp_path: Path) -> None:
    """A secrets backend that refuses is an error, not "no connection": no second database is used."""
    (tmp_path / "denying_backend.py").write_text(textwrap.dedent("""
        from airflow.sdk.exceptions import AirflowSecretsBackendAccessDenied
        from airflow.secrets import BaseSecretsBackend

        class Denying(BaseSecretsBackend):
            def get_connection(self, conn_id):
                raise AirflowSecretsBackendAccessDenied(f"access to {conn_id} denied")
    """))
    got = _state_url({"AIRFLOW__SECRETS__BACKEND": "denying_backend.Denying",
                      "OPENBELL_DATABASE_URL": "postgresql+psycopg2://user:secret-pw@127.0.0.1:5/fallback"}, tmp_path)
    assert got.returncode != 0
    assert "fallback" not in got.stdout
    assert "denied" in got.stderr
