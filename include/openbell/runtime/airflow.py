"""Airflow's processes for openbell: configuration, start and stop, and a small REST client.

One :class:`AirflowStack` runs the scheduler (LocalExecutor), dag-processor, triggerer and
api-server under one ``AIRFLOW_HOME``, configured through the environment only; with a Celery broker
(:class:`CeleryWorkers`) the scheduler hands tasks to CeleryExecutor and the stack starts Celery workers
too. Connections are passed as ``AIRFLOW_CONN_*`` variables, so credentials live in Airflow Connections
and never in a file of the project.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import requests

from openbell.adapters.alpaca.config import CONN_ID, AlpacaConfig
from openbell.dberrors import redact
from openbell.paths import project_dir
from openbell.runtime.airflow_api import ADMIN, AirflowApi
from openbell.workflow.hooks import STATE_CONN_ID
from openbell.workflow.sensors import TRADING_QUEUE

log = logging.getLogger(__name__)

PROCESSES = ("scheduler", "dag-processor", "triggerer", "api-server")
DEFAULT_QUEUE = "default"  # Airflow's [operators] default_queue
TERMINAL = {"success", "failed", "skipped", "upstream_failed", "removed"}


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _airflow_uri(url: str) -> str:
    """A SQLAlchemy URL as an Airflow connection URI (scheme ``postgres``)."""
    scheme, rest = url.split("://", 1)
    return ("postgres" if scheme.startswith("postgres") else scheme) + "://" + rest


def alpaca_connection(config: AlpacaConfig) -> str:
    """The ``AIRFLOW_CONN_ALPACA_DEFAULT`` value for ``config``."""
    return json.dumps(
        {"conn_type": "generic", "login": config.key_id, "password": config.secret_key, "extra": config.to_extra()}
    )


@dataclass(frozen=True)
class CeleryWorkers:
    """CeleryExecutor's settings: the broker's URL (Redis) and one worker per entry of ``queues``, each taking
    the comma-separated queues named there."""

    broker_url: str = field(repr=False)
    queues: tuple[str, ...] = (TRADING_QUEUE, DEFAULT_QUEUE)
    concurrency: int = 8

    @property
    def names(self) -> tuple[str, ...]:
        """The workers' process names: ``worker-<first queue>``, then ``-2``, ``-3``... for more on one queue."""
        firsts = [q.split(",")[0] for q in self.queues]
        return tuple(f"worker-{q}" + (f"-{n}" if (n := firsts[: i + 1].count(q)) > 1 else "")
                     for i, q in enumerate(firsts))


@dataclass(repr=False)
class AirflowStack(AirflowApi):
    """Airflow's four processes for openbell, under ``home``."""

    home: Path
    metadata_url: str
    state_url: str
    alpaca: AlpacaConfig | None  # None: no alpaca connection in the environment (the accounts file names theirs)
    api_port: int = 0
    extra_env: Mapping[str, str] = field(default_factory=dict)
    paused: bool = False  # the DAG starts paused: nothing runs before :meth:`unpause`
    celery: CeleryWorkers | None = None  # None: LocalExecutor
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict, init=False)
    sessions: set[int] = field(default_factory=set, init=False)  # every process session started, killed ones too

    def __repr__(self) -> str:
        """The settings, database passwords hidden and only the names of ``extra_env``."""
        return (f"AirflowStack(home={self.home!r}, metadata_url={redact(self.metadata_url)!r}, "
                f"state_url={redact(self.state_url)!r}, alpaca={self.alpaca!r}, api_port={self.api_port!r}, "
                f"extra_env={sorted(self.extra_env)!r}, paused={self.paused!r}, celery={self.celery!r})")

    def __post_init__(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "logs").mkdir(exist_ok=True)
        if not self.api_port:
            self.api_port = free_port()

    # -- configuration ---------------------------------------------------------------------------

    @property
    def process_names(self) -> tuple[str, ...]:
        """Airflow's four processes, and the Celery workers on CeleryExecutor."""
        return PROCESSES + (self.celery.names if self.celery else ())

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def _secret(self, name: str) -> str:
        """A per-home random secret, created once and kept private to this home."""
        path = self.home / "secrets.json"
        values = json.loads(path.read_text()) if path.exists() else {}
        if name not in values:
            values[name] = secrets.token_urlsafe(32)
            path.write_text(json.dumps(values))
            path.chmod(0o600)
        return str(values[name])

    @property
    def admin_password(self) -> str:
        return self._secret("admin_password")

    def environment(self) -> dict[str, str]:
        """The environment every Airflow process of this stack runs with: the stack's defaults, except for
        any ``AIRFLOW__...`` setting already in the environment, which wins."""
        passwords = self.home / "passwords.json"
        passwords.write_text(json.dumps({ADMIN: self.admin_password}))
        passwords.chmod(0o600)
        root = project_dir()
        defaults = {
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(root / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(root / "plugins"),
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",  # the alpaca connection's Test button
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": str(self.paused),
            "AIRFLOW__CORE__PARALLELISM": "16",
            "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": "16",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.api_url}/execution/",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.metadata_url,
            "AIRFLOW__API__BASE_URL": self.api_url,
            "AIRFLOW__API__SECRET_KEY": self._secret("api_secret_key"),
            "AIRFLOW__API_AUTH__JWT_SECRET": self._secret("jwt_secret"),
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "30",
            "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.5",
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(self.home / "logs"),
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            "AIRFLOW_CONN_" + STATE_CONN_ID.upper(): _airflow_uri(self.state_url),
            "OPENBELL_PROJECT_DIR": str(root),
            "PYTHONUNBUFFERED": "1",
        }
        if self.alpaca is not None:
            defaults["AIRFLOW_CONN_" + CONN_ID.upper()] = alpaca_connection(self.alpaca)
        if self.celery is not None:
            defaults |= {"AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
                         "AIRFLOW__CELERY__BROKER_URL": self.celery.broker_url,
                         "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + self.metadata_url,
                         "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(self.celery.concurrency),
                         "AIRFLOW__OPERATORS__DEFAULT_QUEUE": DEFAULT_QUEUE}
        env = dict(os.environ)
        # an Airflow setting the user exported wins over the stack's default for it
        env.update({k: v for k, v in defaults.items() if not (k.startswith("AIRFLOW__") and k in os.environ)})
        env.update(self.extra_env)
        return env

    def airflow(self, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        """Run one ``airflow`` CLI command in this stack's environment."""
        return subprocess.run(
            [_airflow_bin(), *args], env=self.environment(), check=check, capture_output=True, text=True,
            timeout=timeout,
        )

    # -- processes -------------------------------------------------------------------------------

    def migrate(self) -> None:
        """Create or upgrade Airflow's metadata database."""
        out = self.airflow("db", "migrate", check=False)
        if out.returncode != 0:
            raise RuntimeError(f"airflow db migrate failed:\n{out.stderr[-4000:]}")

    def start(self) -> None:
        """Start the four processes and any Celery workers (logs under ``home/logs``)."""
        for name in self.process_names:
            self.start_process(name)

    def start_process(self, name: str) -> int:
        """Start one of :attr:`process_names` in a session of its own; returns its pid."""
        if name not in self.process_names:
            raise ValueError(f"unknown Airflow process {name!r}; one of {', '.join(self.process_names)}")
        args = [_airflow_bin(), name]
        if name == "api-server":
            args += ["--host", "127.0.0.1", "--port", str(self.api_port), "--workers", "1"]
        elif self.celery is not None and name in self.celery.names:
            queues = self.celery.queues[self.celery.names.index(name)]
            # the logs are on this machine's disk, where the api-server reads them: no log server per worker
            args = [_airflow_bin(), "celery", "worker", "--queues", queues, "--celery-hostname", f"{name}@%h",
                    "--skip-serve-logs"]
        with open(self.home / "logs" / f"{name}.log", "ab") as logf:
            proc = subprocess.Popen(
                args, env=self.environment(), stdout=logf, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.procs[name] = proc
        self.sessions.add(proc.pid)
        return proc.pid

    def kill(self, name: str) -> list[int]:
        """SIGKILL one process and every process of its session, as a crash of its machine or container
        would (the scheduler's session holds LocalExecutor's task processes); returns the pids killed."""
        proc = self.procs.pop(name)
        pids = sorted({proc.pid, *session_processes({proc.pid})})
        _signal_group(proc, signal.SIGKILL)
        signal_sessions({proc.pid}, signal.SIGKILL)
        proc.wait(timeout=10)
        deadline = time.monotonic() + 10
        while session_processes({proc.pid}) and time.monotonic() < deadline:
            time.sleep(0.05)
        log.info("killed airflow %s: pids %s", name, pids)
        return pids

    def kill_all(self) -> dict[str, list[int]]:
        """SIGKILL every process of the stack at once (a power cut); the pids killed, per process."""
        return {name: self.kill(name) for name in list(self.procs)}

    def restart(self, name: str, env: Mapping[str, str] | None = None) -> int:
        """Start ``name`` again (killed first if it still runs), with ``env`` added to ``extra_env`` for it
        and every process started after it; returns the new pid."""
        if env:
            self.extra_env = {**self.extra_env, **env}
        if name in self.procs:
            self.kill(name)
        return self.start_process(name)

    def wait_ready(self, timeout: float = 180) -> None:
        """Wait until the api-server answers and the DAG is parsed without import errors."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                dag = self.get(f"/api/v2/dags/{self.dag_id}")
                if dag.get("dag_id") == self.dag_id:
                    return
            except (requests.RequestException, RuntimeError):
                pass
            time.sleep(1)
        errors = self.import_errors()
        raise TimeoutError(f"Airflow did not load DAG {self.dag_id!r} within {timeout:.0f}s; import errors: {errors}")

    def check_alive(self) -> None:
        """Raise if one of the processes has exited."""
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                tail = (self.home / "logs" / f"{name}.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"airflow {name} exited with {proc.returncode}:\n{tail}")

    def stop(self, grace: float = 20) -> None:
        """Stop every process and everything they started: SIGTERM to each process's session (the task
        processes Airflow puts in groups of their own and their order workers included), SIGKILL to what
        is left after ``grace`` seconds."""
        sessions = {*self.sessions, *(proc.pid for proc in self.procs.values())}  # each a session leader
        for proc in self.procs.values():
            if proc.poll() is None:
                _signal_group(proc, signal.SIGTERM)
        signal_sessions(sessions, signal.SIGTERM)
        if not self._wait_gone(sessions, grace):
            log.warning("Airflow's processes still running %.0fs after SIGTERM: killing them", grace)
            for proc in self.procs.values():
                if proc.poll() is None:
                    _signal_group(proc, signal.SIGKILL)
            signal_sessions(sessions, signal.SIGKILL)
            self._wait_gone(sessions, 5)
        self.procs.clear()
        self.sessions.clear()

    def _wait_gone(self, sessions: set[int], timeout: float) -> bool:
        """Wait until the processes and every member of their sessions are gone."""
        deadline = time.monotonic() + timeout
        while True:
            done = all(proc.poll() is not None for proc in self.procs.values())
            if done and not session_processes(sessions):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)

    def __enter__(self) -> AirflowStack:
        self.migrate()
        self.start()
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _airflow_bin() -> str:
    return str(Path(sys.executable).with_name("airflow"))


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)


def session_processes(sessions: Collection[int]) -> list[int]:
    """The live (not zombie) processes whose session id is one of ``sessions``; none where there is no /proc."""
    try:
        entries = [e for e in os.listdir("/proc") if e.isdigit()]
    except OSError:
        return []
    found = []
    for entry in entries:
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z" and int(fields[3]) in sessions:
            found.append(int(entry))
    return found


def signal_sessions(sessions: Collection[int], sig: signal.Signals) -> None:
    """Send ``sig`` to every process of ``sessions``."""
    for pid in session_processes(sessions):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)
