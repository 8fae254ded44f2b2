"""Small helpers shared by the Trading view tests."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import uvicorn
import websockets

from openbell.runtime.airflow import free_port
from openbell.ui.auth import COOKIE

__all__ = ["COOKIE", "GOOD_TOKEN", "good_cookie", "recv_until", "serving", "stand_in_login", "ws_connect"]

GOOD_TOKEN = "a-token-the-stand-in-accepts"


async def stand_in_login(token: str) -> Any | None:
    """Accepts exactly one token, as Airflow's auth manager accepts the one it issued."""
    return {"username": "viewer"} if token == GOOD_TOKEN else None


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
