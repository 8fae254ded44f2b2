"""An embedded PostgreSQL server for machines without one: :class:`EmbeddedPostgres`, its cluster in a data
directory, started and stopped.

The server binaries come from the ``pgserver`` wheel; openbell runs them itself so the server listens on
TCP 127.0.0.1 with password authentication (no unix socket). When the process runs as root, the binaries
run as the unprivileged system user ``pgserver`` (postgres refuses to run as root).

Layout of ``data_dir``: ``pgdata/`` (the cluster), ``port`` (the saved port), ``password`` (0600),
``postgres.log`` and ``.lock`` (serializes start/stop between processes).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import secrets
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2

from openbell.dberrors import redact
from openbell.pg.databases import ensure_database

log = logging.getLogger(__name__)

SUPERUSER = "openbell"
SYSTEM_USER = "pgserver"
_CONF_NAME = "openbell.conf"


class EmbeddedPostgresError(RuntimeError):
    """The embedded server could not be initialized, started or stopped."""


def bin_dir() -> Path:
    """Directory holding the PostgreSQL binaries shipped in the ``pgserver`` wheel."""
    import importlib.util

    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedPostgresError("the 'pgserver' package is not installed: it ships the Postgres binaries")
    path = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    if not (path / "postgres").exists():
        raise EmbeddedPostgresError(f"no postgres binary under {path}")
    return path


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class EmbeddedPostgres:
    """A PostgreSQL server whose files live in ``data_dir``, listening on 127.0.0.1:``port``."""

    def __init__(self, data_dir: Path, port: int | None = None, *, durable: bool = True) -> None:
        """``port`` None: a free port chosen once and saved in ``data_dir``.

        ``durable=False`` turns off fsync and synchronous commit (for tests and throwaway servers).
        """
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.pgdata = self.data_dir / "pgdata"
        self.log_file = self.data_dir / "postgres.log"
        self._requested_port = port
        self.durable = durable
        self._as_root = os.geteuid() == 0
        self._bin = bin_dir()

    # -- state on disk -------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The port the server listens (or will listen) on."""
        if self._requested_port is not None:
            return self._requested_port
        saved = self.data_dir / "port"
        if saved.exists():
            return int(saved.read_text().strip())
        self.data_dir.mkdir(parents=True, exist_ok=True)
        port = _free_port()
        saved.write_text(f"{port}\n")
        return port

    @property
    def password(self) -> str:
        """The superuser's password (created with the cluster, kept in ``data_dir/password``)."""
        path = self.data_dir / "password"
        if not path.exists():
            raise EmbeddedPostgresError(f"no password file in {self.data_dir}: the server was never started")
        return path.read_text().strip()

    def _postmaster_pid(self) -> int | None:
        pidfile = self.pgdata / "postmaster.pid"
        try:
            first = pidfile.read_text().splitlines()[0]
        except (OSError, IndexError):
            return None
        try:
            pid = int(first.strip())
        except ValueError:
            return None
        if not _pid_alive(pid):
            return None
        comm = Path(f"/proc/{pid}/comm")
        if comm.exists() and comm.read_text().strip() != "postgres":
            return None  # a stale pid file whose pid now belongs to another program
        return pid

    @property
    def running(self) -> bool:
        """True when this data directory's postmaster is alive."""
        return self._postmaster_pid() is not None

    # -- commands ------------------------------------------------------------------------------------

    def _run(self, args: list[str], *, timeout: float = 120.0) -> str:
        kwargs: dict[str, Any] = {}
        if self._as_root:
            import pwd

            entry = pwd.getpwnam(SYSTEM_USER)
            kwargs = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        # pg_ctl's -l log and -w waiting read/write files; output goes to temporary files because pipes
        # inherited by the detached postmaster would keep subprocess.run waiting.
        with tempfile.TemporaryFile("w+") as out:
            proc = subprocess.run(
                [str(self._bin / args[0]), *args[1:]],
                stdout=out,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=timeout,
                env=env,
                cwd="/",
                check=False,
                **kwargs,
            )
            out.seek(0)
            output = out.read()
        if proc.returncode != 0:
            tail = output.strip()[-2000:]
            raise EmbeddedPostgresError(f"{args[0]} failed (exit {proc.returncode}): {tail}")
        return output

    def _prepare_permissions(self) -> None:
        """As root: make the system user exist, own data_dir and reach it and the binaries."""
        if not self._as_root:
            return
        import pwd

        try:
            entry = pwd.getpwnam(SYSTEM_USER)
        except KeyError:
            subprocess.run(
                ["useradd", "--system", "--no-create-home", "-s", "/usr/sbin/nologin", SYSTEM_USER],
                check=True, capture_output=True,
            )
            entry = pwd.getpwnam(SYSTEM_USER)
        # Others may traverse (not list) every parent of data_dir and of the binaries.
        for target in (self.data_dir, self._bin.parent):
            for parent in target.parents:
                mode = parent.stat().st_mode
                if not mode & stat.S_IXOTH:
                    parent.chmod(mode | stat.S_IXOTH)
        for path in (self.data_dir, self.pgdata):
            path.mkdir(parents=True, exist_ok=True)
            os.chown(path, entry.pw_uid, entry.pw_gid)
        self.pgdata.chmod(0o700)
        if self.log_file.exists():
            os.chown(self.log_file, entry.pw_uid, entry.pw_gid)

    def _initdb(self) -> None:
        password = secrets.token_urlsafe(24)
        pwfile = self.data_dir / ".initdb-pw"
        pwfile.write_text(password + "\n")
        pwfile.chmod(0o600)
        if self._as_root:
            import pwd

            entry = pwd.getpwnam(SYSTEM_USER)
            os.chown(pwfile, entry.pw_uid, entry.pw_gid)
        try:
            self._run([
                "initdb", "-D", str(self.pgdata), "-U", SUPERUSER, f"--pwfile={pwfile}",
                "--auth-host=scram-sha-256", "--auth-local=scram-sha-256",
                "--encoding=UTF8", "--locale=C", "--no-instructions",
            ])
        finally:
            pwfile.unlink(missing_ok=True)
        secret = self.data_dir / "password"
        secret.write_text(password + "\n")
        secret.chmod(0o600)
        with (self.pgdata / "postgresql.conf").open("a") as conf:
            conf.write(f"\ninclude_if_exists = '{_CONF_NAME}'\n")
        log.info("initialized a Postgres cluster in %s", self.pgdata)

    def _write_conf(self, port: int) -> None:
        lines = [
            "listen_addresses = '127.0.0.1'",
            f"port = {port}",
            "unix_socket_directories = ''",
            "max_connections = 200",
            "logging_collector = off",
            "timezone = 'UTC'",
        ]
        if not self.durable:
            lines += ["fsync = off", "synchronous_commit = off", "full_page_writes = off"]
        conf = self.pgdata / _CONF_NAME
        conf.write_text("\n".join(lines) + "\n")
        if self._as_root:
            import pwd

            entry = pwd.getpwnam(SYSTEM_USER)
            os.chown(conf, entry.pw_uid, entry.pw_gid)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with (self.data_dir / ".lock").open("a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def start(self) -> None:
        """Initialize the cluster on first use and start it; a no-op when it already runs."""
        with self._locked():
            if self.running:
                self._wait_ready(timeout=60.0)
                return
            self._prepare_permissions()
            if not (self.pgdata / "PG_VERSION").exists():
                self._initdb()
            port = self.port
            if _port_in_use(port):
                if self._requested_port is not None:
                    raise EmbeddedPostgresError(f"port {port} on 127.0.0.1 is taken by another program")
                port = _free_port()
                log.warning("saved port %s is taken; the embedded Postgres moves to port %s", self.port, port)
                (self.data_dir / "port").write_text(f"{port}\n")
            self._write_conf(port)
            if not self.log_file.exists():
                self.log_file.touch()
                self._prepare_permissions()
            try:
                self._run(["pg_ctl", "-D", str(self.pgdata), "-l", str(self.log_file), "-w", "-t", "60",
                           "start"], timeout=90.0)
            except EmbeddedPostgresError as exc:
                raise EmbeddedPostgresError(f"{exc}\n--- {self.log_file} ---\n{self._log_tail()}") from exc
            self._wait_ready(timeout=60.0)
            log.info("embedded Postgres running on 127.0.0.1:%s (data in %s)", port, self.pgdata)

    def _log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                psycopg2.connect(self._dsn("postgres"), connect_timeout=3).close()
                return
            except psycopg2.OperationalError as exc:
                last = exc
                time.sleep(0.2)
        raise EmbeddedPostgresError(f"Postgres at {redact(self.url())} not accepting connections: {last}")

    def stop(self) -> None:
        """Fast shutdown (rolls back open transactions, disconnects clients); a no-op when stopped."""
        with self._locked():
            if not self.running:
                return
            self._run(["pg_ctl", "-D", str(self.pgdata), "-m", "fast", "-w", "-t", "60", "stop"],
                      timeout=90.0)

    def restart(self) -> None:
        """Stop, then start."""
        self.stop()
        self.start()

    # -- URLs and databases --------------------------------------------------------------------------

    def _dsn(self, database: str) -> str:
        return (f"host=127.0.0.1 port={self.port} user={SUPERUSER} password={self.password} "
                f"dbname={database}")

    def url(self, database: str = "postgres") -> str:
        """``postgresql+psycopg2://openbell:PASSWORD@127.0.0.1:PORT/database``."""
        return f"postgresql+psycopg2://{SUPERUSER}:{self.password}@127.0.0.1:{self.port}/{database}"

    def ensure_database(self, name: str) -> str:
        """Create database ``name`` if it is missing; return its URL."""
        return ensure_database(self.url(), name)

    def __repr__(self) -> str:
        return f"EmbeddedPostgres({str(self.data_dir)!r}, port={self.port})"
