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


def test_on_celery_the_stack_runs_celery_workers_one_for_live_tradings_queue(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from openbell.runtime.airflow import CeleryWorkers

    monkeypatch.delenv("AIRFLOW__CORE__EXECUTOR", raising=False)
    local = _stack(tmp_path)
    assert local.environment()["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert local.process_names == ("scheduler", "dag-processor", "triggerer", "api-server")

    broker = "redis://:redis-pw-for-tests@127.0.0.1:6390/0"
    celery = AirflowStack(tmp_path / "airflow", URL.replace("/openbell", "/airflow"), URL, None, api_port=1,
                          celery=CeleryWorkers(broker))
    env = celery.environment()
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__CELERY__BROKER_URL"] == broker
    assert env["AIRFLOW__CELERY__RESULT_BACKEND"] == "db+" + URL.replace("/openbell", "/airflow")
    assert celery.process_names[-2:] == ("worker-trading", "worker-default")
    assert "redis-pw-for-tests" not in repr(celery)
    with pytest.raises(ValueError, match="unknown Airflow process 'worker-nope'"):
        celery.start_process("worker-nope")


def test_live_trading_goes_to_the_trading_queue() -> None:
    from openbell.workflow.sensors import TRADING_QUEUE, LiveTradingSensor

    assert TRADING_QUEUE == "trading"
    assert LiveTradingSensor(task_id="live_trading").queue == "trading"
