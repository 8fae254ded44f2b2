"""docker-compose.yaml checked against the local set-up (Docker itself does not run here)."""

from __future__ import annotations

import os
import re
import subprocess
import uuid
from pathlib import Path

import psycopg2
import pytest
import yaml
from sqlalchemy.engine import make_url

from openbell.adapters.alpaca.config import CONN_ID
from openbell.pg.server import bin_dir
from openbell.workflow.hooks import STATE_CONN_ID

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yaml").read_text())
AIRFLOW_SERVICES = ("airflow-init", "api-server", "scheduler", "dag-processor", "triggerer")
CELERY_WORKERS = ("worker-trading", "worker-default")


def _airflow_version() -> str:
    pins = (ROOT / "requirements.txt").read_text()
    match = re.search(r"^apache-airflow==(\S+)$", pins, re.M)
    assert match, "apache-airflow is not pinned"
    return match.group(1)


def test_services_are_the_local_processes_with_local_executor() -> None:
    services = COMPOSE["services"]
    assert set(AIRFLOW_SERVICES) | {"postgres", "simulator", "redis", *CELERY_WORKERS} == set(services)
    assert services["simulator"]["profiles"] == ["sim"]
    for name in AIRFLOW_SERVICES:
        svc = services[name]
        assert svc["image"] == f"apache/airflow:{_airflow_version()}-python3.11", name
        env = svc["environment"]
        assert _interpolate(env["AIRFLOW__CORE__EXECUTOR"], ENV) == "LocalExecutor"
        assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://")
        # Airflow's default execution-token lifetime: the supervisor's heartbeats renew it all session.
        assert "AIRFLOW__EXECUTION_API__JWT_EXPIRATION_TIME" not in env
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


NASTY = "p@ss:w/rd?#%&+ 'x;$y`"  # what a URL or SQL literal would mangle (JSON forbids only '"' and '\')


def _interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's variable interpolation: ``${VAR}``, ``${VAR:-default}``, ``${VAR:?error}``, ``$$``."""
    def one(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name, op, arg = m.group(1), m.group(2), m.group(3) or ""
        if env.get(name):
            return env[name]
        assert op != ":?", f"{name} is required"
        return arg if op == ":-" else ""
    return re.sub(r"\$\$|\$\{(\w+)(?:(:-|:\?)([^}]*))?\}", one, value)


ENV = {"POSTGRES_PASSWORD": NASTY, "APCA_API_KEY_ID": "key-id", "APCA_API_SECRET_KEY": "secret",
       "AIRFLOW_API_SECRET_KEY": "s1", "AIRFLOW_JWT_SECRET": "s2"}


@pytest.mark.parametrize("service", AIRFLOW_SERVICES)
def test_connections_are_json_and_keep_any_password(service: str) -> None:
    from airflow.sdk import Connection

    env = {k: _interpolate(str(v), ENV) for k, v in COMPOSE["services"][service]["environment"].items()}
    db = Connection.from_json(env[f"AIRFLOW_CONN_{STATE_CONN_ID.upper()}"], conn_id=STATE_CONN_ID)
    url = make_url(db.get_uri())
    assert (url.username, url.password, url.host, url.port, url.database) == (
        "openbell", NASTY, "postgres", 5432, "openbell")
    alpaca = Connection.from_json(env[f"AIRFLOW_CONN_{CONN_ID.upper()}"], conn_id=CONN_ID)
    assert (alpaca.login, alpaca.password) == ("key-id", "secret")


@pytest.mark.parametrize("service", AIRFLOW_SERVICES)
def test_database_urls_carry_no_password_libpq_takes_it_from_the_environment(service: str) -> None:
    env = {k: _interpolate(str(v), ENV) for k, v in COMPOSE["services"][service]["environment"].items()}
    urls = [env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]] + [env[k] for k in env if k == "OPENBELL_DATABASE_URL"]
    for url in urls:
        parsed = make_url(url)
        assert parsed.password is None and parsed.host == "postgres", url
    assert env["PGPASSWORD"] == NASTY


def test_every_wildcard_listen_address_says_why_and_ports_stay_on_loopback() -> None:
    lines = (ROOT / "docker-compose.yaml").read_text().splitlines()
    for i, line in enumerate(lines):
        if "0.0.0.0" in line and not line.strip().startswith("#"):
            assert lines[i - 1].strip().startswith("#") and "container" in lines[i - 1], line
    assert COMPOSE["services"]["api-server"]["environment"]["AIRFLOW__API__HOST"] == "0.0.0.0"
    for name, svc in COMPOSE["services"].items():
        for port in svc.get("ports", []):
            assert port.startswith("127.0.0.1:"), (name, port)


def test_init_script_passes_the_password_as_a_quoted_literal(pg_server_url: str, tmp_path: Path) -> None:
    server = make_url(pg_server_url)
    name = f"ob_init_{uuid.uuid4().hex[:8]}"
    script = tmp_path / "init.sh"
    script.write_text((ROOT / "docker/postgres-init.sh").read_text().replace("openbell", name))
    password = NASTY + "\"\\ :'x' \n--"
    env = {**os.environ, "PATH": f"{bin_dir()}{os.pathsep}{os.environ['PATH']}", "POSTGRES_USER": str(server.username),
           "POSTGRES_DB": str(server.database or "postgres"), "POSTGRES_PASSWORD": password,
           "PGHOST": str(server.host), "PGPORT": str(server.port), "PGPASSWORD": str(server.password)}
    try:
        run = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=60)
        assert run.returncode == 0, run.stderr
        conn = psycopg2.connect(host=server.host, port=server.port, user=name, password=password, dbname=name)
        with conn, conn.cursor() as cur:
            cur.execute("SELECT current_user, current_database()")
            assert cur.fetchone() == (name, name)
        conn.close()
    finally:
        admin = psycopg2.connect(host=server.host, port=server.port, user=server.username, password=server.password,
                                 dbname=server.database or "postgres")
        admin.autocommit = True
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
            cur.execute(f'DROP ROLE IF EXISTS "{name}"')
        admin.close()


def test_the_celery_profile_runs_live_trading_on_a_worker_of_its_own() -> None:
    """``AIRFLOW_EXECUTOR=CeleryExecutor docker compose --profile celery up``: Redis with a password, one worker
    for the trading queue (live_trading's, see openbell.workflow.sensors) and one for the default queue."""
    from openbell.workflow.sensors import TRADING_QUEUE

    services = COMPOSE["services"]
    assert services["redis"]["profiles"] == ["celery"]
    assert "--requirepass" in services["redis"]["command"]
    queues = {}
    for name in CELERY_WORKERS:
        svc = services[name]
        assert svc["profiles"] == ["celery"] and svc["image"] == services["scheduler"]["image"], name
        assert svc["command"][:2] == ["celery", "worker"], name
        queues[name] = svc["command"][svc["command"].index("--queues") + 1]
        assert int(svc["stop_grace_period"].rstrip("s")) >= 60, name
        assert svc["depends_on"]["redis"]["condition"] == "service_healthy", name
    assert queues == {"worker-trading": TRADING_QUEUE, "worker-default": "default"}
    env = {k: _interpolate(str(v), {**ENV, "AIRFLOW_EXECUTOR": "CeleryExecutor", "REDIS_PASSWORD": "r-pw"})
           for k, v in services["scheduler"]["environment"].items()}
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__CELERY__BROKER_URL"] == "redis://:r-pw@redis:6379/0"
    assert make_url(env["AIRFLOW__CELERY__RESULT_BACKEND"].removeprefix("db+")).password is None
