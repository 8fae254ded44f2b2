"""docker-compose.yaml checked against the local set-up (Docker itself does not run here)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from openbell.alpaca import CONN_ID
from openbell.steps import STATE_CONN_ID

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yaml").read_text())
AIRFLOW_SERVICES = ("airflow-init", "api-server", "scheduler", "dag-processor", "triggerer")


def _airflow_version() -> str:
    pins = (ROOT / "requirements.txt").read_text()
    match = re.search(r"^apache-airflow==(\S+)$", pins, re.M)
    assert match, "apache-airflow is not pinned"
    return match.group(1)


def test_services_are_the_local_processes_with_local_executor() -> None:
    services = COMPOSE["services"]
    assert set(AIRFLOW_SERVICES) | {"postgres", "simulator"} == set(services)
    assert services["simulator"]["profiles"] == ["sim"]
    for name in AIRFLOW_SERVICES:
        svc = services[name]
        assert svc["image"] == f"apache/airflow:{_airflow_version()}-python3.11", name
        env = svc["environment"]
        assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
        assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://")
        # The execution token must outlive a whole session (the trading task runs ~6.5 h).
        assert int(env["AIRFLOW__EXECUTION_API__JWT_EXPIRATION_TIME"]) > 7 * 3600
        assert f"AIRFLOW_CONN_{CONN_ID.upper()}" in env and f"AIRFLOW_CONN_{STATE_CONN_ID.upper()}" in env
        mounts = {m.split(":")[1] for m in svc["volumes"]}
        assert {"/opt/airflow/dags", "/opt/airflow/plugins", "/opt/openbell"} <= mounts
        assert "pip install -q --no-deps -e /opt/openbell" in " ".join(svc["entrypoint"])


def test_scheduler_stops_gracefully_and_nothing_secret_is_in_the_file() -> None:
    grace = COMPOSE["services"]["scheduler"]["stop_grace_period"]
    assert int(grace.rstrip("s")) >= 60
    text = (ROOT / "docker-compose.yaml").read_text()
    # Credentials only come from .env through variables, never as literals.
    for line in text.splitlines():
        if "APCA_API_SECRET_KEY" in line or "password" in line.lower():
            assert "${" in line or line.strip().startswith("#"), line
    mounted = {m.split(":")[0] for m in COMPOSE["services"]["postgres"]["volumes"]}
    assert "./docker/postgres-init.sh" in mounted and (ROOT / "docker/postgres-init.sh").exists()
