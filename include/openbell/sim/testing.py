"""Run a simulator in a subprocess for tests, demos and benchmarks.

    with SimProcess(date="2025-11-20", speed=600, start="09:29") as sim:
        client = sim.config().trading_client()

    with SimProcess(accounts=["a", "b"]) as sim:  # two accounts, each with a key of its own
        client_b = sim.config(account="b").trading_client()
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from openbell.adapters.alpaca.config import AlpacaConfig
from openbell.sim.accounts import ACCOUNTS_ENV


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class SimProcess:
    """A simulator subprocess on a loopback port (a free one unless given); a context manager (stop on exit).

    ``accounts`` names accounts to serve instead of the one of ``key`` (``$OPENBELL_SIM_ACCOUNTS``): account
    NAME's key is ``<key>-NAME`` and its secret ``<secret>-NAME``."""

    def __init__(
        self,
        *,
        date: str = "2025-11-20",
        speed: float = 60.0,
        start: str = "09:25",
        data_dir: str | Path | None = None,
        key: str = "test-key",
        secret: str = "test-secret",
        extra_args: Sequence[str] = (),
        startup_timeout: float = 30.0,
        port: int = 0,
        accounts: Sequence[str] = (),
    ) -> None:
        self.date = date
        self.speed = speed
        self.start_at = start
        self.key = key
        self.secret = secret
        self.extra_args = list(extra_args)
        self.accounts = list(accounts)
        self.startup_timeout = startup_timeout
        self._own_dir = data_dir is None
        self.data_dir = Path(tempfile.mkdtemp(prefix="openbell-sim-")) if data_dir is None else Path(data_dir)
        self.port = port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = self.data_dir / "sim.log"
        self.proc: subprocess.Popen[bytes] | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> SimProcess:
        """Start the subprocess and wait until ``/sim/health`` answers."""
        if self.proc is not None and self.proc.poll() is None:
            return self
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable, "-m", "openbell.sim",
            "--host", "127.0.0.1", "--port", str(self.port), "--data-dir", str(self.data_dir),
            "--date", self.date, "--speed", str(self.speed), "--start", self.start_at,
            "--log-level", "WARNING", *self.extra_args,
        ]
        env = {**os.environ, "APCA_API_KEY_ID": self.key, "APCA_API_SECRET_KEY": self.secret}
        env.pop(ACCOUNTS_ENV, None)
        if self.accounts:  # in the environment: no secret on the command line
            env[ACCOUNTS_ENV] = "\n".join(":".join((name, *self.credentials(name))) for name in self.accounts)
        log = open(self.log_path, "ab")  # noqa: SIM115 - kept open for the child's lifetime
        try:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        finally:
            log.close()
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"simulator exited with {self.proc.returncode}:\n{self.log()}")
            with contextlib.suppress(OSError):
                if self._get("/sim/health").get("status") == "ok":
                    return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"simulator did not answer within {self.startup_timeout}s:\n{self.log()}")

    def stop(self) -> None:
        """SIGTERM, then kill after 5 s."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    def restart(self) -> None:
        """Stop and start again on the same port and data dir; broker state and clock survive."""
        self.stop()
        self.start()

    def __enter__(self) -> SimProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def log(self) -> str:
        """The simulator's output so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    # -- helpers --------------------------------------------------------------------------------

    def credentials(self, account: str | None = None) -> tuple[str, str]:
        """The key and secret of ``account`` (None: the simulator's one account, or its first of ``accounts``)."""
        if account is None:
            return (self.key, self.secret) if not self.accounts else self.credentials(self.accounts[0])
        if account not in self.accounts:
            raise ValueError(f"no account {account!r} in this simulator (accounts: {self.accounts})")
        return f"{self.key}-{account}", f"{self.secret}-{account}"

    def config(self, account: str | None = None) -> AlpacaConfig:
        """Settings for openbell's alpaca-py clients against this simulator (its ``--rate-limit`` included), for
        ``account`` (see :meth:`credentials`)."""
        config = AlpacaConfig.for_simulator(self.base_url, *self.credentials(account))
        args = [a for arg in self.extra_args for a in arg.split("=", 1)]
        if "--rate-limit" in args:
            config = dataclasses.replace(config, rate_limit=int(args[args.index("--rate-limit") + 1]))
        return config

    def clock(self) -> dict[str, Any]:
        """``GET /sim/clock``."""
        return self._get("/sim/clock")

    def health(self) -> dict[str, Any]:
        """``GET /sim/health``: market time, stream connections and the broker's counters."""
        return self._get("/sim/health")

    def faults(self) -> dict[str, Any]:
        """``GET /sim/faults``: settings and counters."""
        return self._get("/sim/faults")

    def set_faults(self, **faults: Any) -> dict[str, Any]:
        """``POST /sim/faults`` with this simulator's key; ValueError with the simulator's message if refused."""
        key, secret = self.credentials()
        headers = {"Content-Type": "application/json", "APCA-API-KEY-ID": key, "APCA-API-SECRET-KEY": secret}
        req = urllib.request.Request(self.base_url + "/sim/faults", data=json.dumps(faults).encode(), headers=headers,
                                     method="POST")
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as exc:
            raise ValueError(json.loads(exc.read()).get("message", str(exc))) from None

    def _get(self, path: str) -> dict[str, Any]:
        with urllib.request.urlopen(self.base_url + path, timeout=5) as r:
            return json.loads(r.read())
