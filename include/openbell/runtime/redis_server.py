"""A local Redis server for rehearsals on CeleryExecutor: Debian's ``redis-server`` (``make redis`` installs it),
on loopback, a free port and a password of its own, nothing written to disk, stopped with the rehearsal.

Celery's workers take Airflow's task messages from it (``AIRFLOW__CELERY__BROKER_URL``), as in Airflow's
official compose file. The password lives in a 0600 file under the server's directory and reaches Airflow's
processes in their environment only.
"""

from __future__ import annotations

import secrets
import shutil
import signal
import subprocess
import time
from pathlib import Path

from openbell.runtime.airflow import free_port

REDIS_BIN = "redis-server"
INSTALL_HINT = "`make redis` installs Debian's redis-server"


class RedisUnavailable(RuntimeError):
    """No ``redis-server`` on this machine, or it did not start."""


def redis_binary() -> str:
    """The path of ``redis-server``; :class:`RedisUnavailable` naming how to install it otherwise."""
    found = shutil.which(REDIS_BIN) or next((p for p in ("/usr/bin/redis-server", "/usr/sbin/redis-server")
                                             if Path(p).exists()), None)
    if found is None:
        raise RedisUnavailable(f"redis-server is not installed: {INSTALL_HINT} (CeleryExecutor needs a broker)")
    return found


class LocalRedis:
    """``redis-server`` under ``home`` (a context manager): :attr:`url` is Celery's broker URL."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://:{self._password()}@127.0.0.1:{self.port}/0"

    def _password(self) -> str:
        path = self.home / "password"
        if not path.exists():
            self.home.mkdir(parents=True, exist_ok=True, mode=0o700)
            path.write_text(secrets.token_urlsafe(24))
            path.chmod(0o600)
        return path.read_text()

    def start(self, timeout: float = 20.0) -> LocalRedis:
        binary = redis_binary()
        self.port = free_port()
        conf = self.home / "redis.conf"  # the password in a private file, never on a command line
        self.home.mkdir(parents=True, exist_ok=True, mode=0o700)
        conf.write_text(f"bind 127.0.0.1\nport {self.port}\nrequirepass {self._password()}\nsave \"\"\n"
                        f"appendonly no\ndir {self.home}\nprotected-mode yes\ndaemonize no\n")
        conf.chmod(0o600)
        with open(self.home / "redis.log", "ab") as log_file:
            self.proc = subprocess.Popen([binary, str(conf)], stdout=log_file, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = (self.home / "redis.log").read_text(errors="replace")[-2000:]
                raise RedisUnavailable(f"redis-server exited with {self.proc.returncode}:\n{tail}")
            if self.ping():
                return self
            time.sleep(0.1)
        self.stop()
        raise RedisUnavailable(f"redis-server did not answer on 127.0.0.1:{self.port} within {timeout:.0f}s")

    def ping(self) -> bool:
        """Whether the server answers an authenticated PING."""
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        # one attempt: start() polls, and a stopped server must answer False at once
        client = redis.Redis(host="127.0.0.1", port=self.port, password=self._password(), socket_timeout=1,
                             socket_connect_timeout=1, retry=Retry(NoBackoff(), 0))
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def stop(self, grace: float = 5.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> LocalRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
