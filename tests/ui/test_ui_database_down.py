"""A state database that does not answer does not stall the api-server's event loop."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest
import requests
from ui_helpers import good_cookie, no_broker, serving, stand_in_login

from openbell.ui import create_app
from openbell.ui.market import Market


class Silent:
    """A TCP server that accepts connections and never answers (a database host gone quiet)."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.accepted = threading.Event()
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.conns.append(conn)
            self.accepted.set()

    def close(self) -> None:
        self.listener.close()
        for conn in self.conns:
            conn.close()


@pytest.fixture
def silent() -> Iterator[Silent]:
    server = Silent()
    yield server
    server.close()


def test_other_requests_are_answered_while_the_database_does_not_answer(silent: Silent) -> None:
    app = create_app(f"postgresql://openbell@127.0.0.1:{silent.port}/openbell", check=stand_in_login,
                     market=Market(no_broker))
    finished: list[str] = []
    status: dict[str, int] = {}

    def get(name: str, path: str) -> None:
        status[name] = requests.get(base + path, cookies=good_cookie(), timeout=30).status_code
        finished.append(name)

    with serving(app) as base:
        snapshot = threading.Thread(target=get, args=("snapshot", "/api/snapshot?date=2025-11-20"))
        snapshot.start()
        assert silent.accepted.wait(10), "the snapshot request never tried the database"
        get("other", "/static/app.js")  # while the snapshot request waits on the database
        silent.close()  # the database host goes away: the snapshot request fails now
        snapshot.join(30)
    assert finished == ["other", "snapshot"]
    assert status == {"other": 200, "snapshot": 503}
