"""Small helpers shared by the Trading view tests."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import uvicorn
import websockets
from airflow.api_fastapi.auth.managers.models.resource_details import DagDetails
from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager
from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

from openbell.runtime.airflow import free_port
from openbell.ui.auth import COOKIE

__all__ = ["CHROMIUM", "CHROMIUM_FLAGS", "COOKIE", "GOOD_TOKEN", "PerDagAuthManager", "airflow_token",
           "good_cookie", "no_broker", "recv_until", "serving", "stand_in_login", "ws_connect"]

GOOD_TOKEN = "a-token-the-stand-in-accepts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


async def stand_in_login(token: str) -> Any | None:
    """Accepts exactly one token, as Airflow's auth manager accepts the one it issued."""
    return {"username": "viewer"} if token == GOOD_TOKEN else None


class PerDagAuthManager(SimpleAuthManager):
    """Airflow's simple auth manager with per-DAG read grants, as the FAB or Keycloak managers give them.

    ``denied`` maps a username to the DAG ids it may not read; every DAG question asked is recorded.
    """

    denied: ClassVar[dict[str, set[str]]] = {}
    asked: ClassVar[list[tuple[str, str, str | None]]] = []

    def is_authorized_dag(self, *, method: Any, user: SimpleAuthManagerUser, access_entity: Any = None,
                          details: DagDetails | None = None) -> bool:
        dag_id = details.id if details else None
        self.asked.append((user.username, method, dag_id))
        if dag_id in self.denied.get(user.username, set()):
            return False
        return super().is_authorized_dag(method=method, user=user, access_entity=access_entity, details=details)


def airflow_token(manager: SimpleAuthManager, username: str, *, role: str = "viewer", seconds: int = 3600) -> str:
    """A JWT issued by ``manager``, as Airflow's login puts it in the ``_token`` cookie."""
    user = SimpleAuthManagerUser(username=username, role=role)
    return manager.generate_jwt(user, expiration_time_in_seconds=seconds)


def no_broker() -> Any:
    """A broker connection loader for tests without a broker."""
    raise RuntimeError("no broker in this test")


def good_cookie() -> dict[str, str]:
    return {COOKIE: GOOD_TOKEN}


def ws_connect(url: str, **kw: Any) -> Any:
    """A WebSocket to the app, logged in."""
    return websockets.connect(url, additional_headers={"Cookie": f"{COOKIE}={good_cookie()[COOKIE]}"},
                              open_timeout=10, **kw)


async def recv_until(ws: Any, want: Any, timeout: float = 10.0) -> dict[str, Any]:
    """The next message for which ``want(message)`` is true (others are skipped)."""
    import asyncio

    async def loop() -> dict[str, Any]:
        while True:
            message = json.loads(await ws.recv())
            if want(message):
                return message

    return await asyncio.wait_for(loop(), timeout)


@contextlib.contextmanager
def serving(app: Any) -> Iterator[str]:
    """Run ``app`` on a free loopback port in a thread; yields its base URL."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", ws="websockets-sansio")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline:
            raise TimeoutError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
