"""The local Airflow stack's environment: its defaults, and the user's Airflow settings winning over them."""

from __future__ import annotations

from pathlib import Path

import pytest

from openbell.adapters.alpaca.config import AlpacaConfig
from openbell.runtime.airflow import AirflowStack

URL = "postgresql+psycopg2://openbell:pw-for-tests@127.0.0.1:5432/openbell"


def _stack(tmp_path: Path) -> AirflowStack:
    return AirflowStack(tmp_path / "airflow", URL.replace("/openbell", "/airflow"), URL,
                        AlpacaConfig(key_id="key-id", secret_key="secret-for-tests"), api_port=1,
                        extra_env={"OPENBELL_DAG_END_DATE": "2025-11-20"})


def test_an_airflow_setting_from_the_environment_wins_over_the_stack_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AIRFLOW__EXECUTION_API__JWT_EXPIRATION_TIME", raising=False)
    monkeypatch.delenv("AIRFLOW__CORE__PARALLELISM", raising=False)
    default = _stack(tmp_path).environment()
    assert "AIRFLOW__EXECUTION_API__JWT_EXPIRATION_TIME" not in default  # Airflow's own default
    assert default["AIRFLOW__CORE__PARALLELISM"] == "16"

    monkeypatch.setenv("AIRFLOW__EXECUTION_API__JWT_EXPIRATION_TIME", "20")
    monkeypatch.setenv("AIRFLOW__CORE__PARALLELISM", "4")
    env = _stack(tmp_path).environment()
    assert env["AIRFLOW__EXECUTION_API__JWT_EXPIRATION_TIME"] == "20"
    assert env["AIRFLOW__CORE__PARALLELISM"] == "4"
    # what is not an Airflow setting stays the stack's: its home, its connections, the run's own variables
    assert env["AIRFLOW_HOME"] == str(tmp_path / "airflow")
    assert env["AIRFLOW_CONN_OPENBELL_DB"] == default["AIRFLOW_CONN_OPENBELL_DB"]
    assert env["OPENBELL_DAG_END_DATE"] == "2025-11-20"
