"""The order client's kept-open connection: alpaca-py against the simulator and a loopback server
that misbehaves (closes idle connections, answers too late, is not there)."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
from alpaca.common.exceptions import APIError
from alpaca.trading.enums import OrderSide, TimeInForce
from alpaca.trading.requests import MarketOrderRequest

from openbell.adapters.alpaca.transport import OrderSession, order_client
from openbell.sim.testing import SimProcess, free_port


def test_alpaca_py_talks_to_the_simulator_through_the_order_session(tmp_path: Path) -> None:
    with SimProcess(date="2025-11-20", speed=1, start="10:00", data_dir=tmp_path / "sim") as sim:
        client = order_client(sim.config())
        assert isinstance(client._session, OrderSession)
        assert client.get_clock().is_open
        order = client.submit_order(MarketOrderRequest(symbol="TQQQ", qty=2, side=OrderSide.BUY,
                                                       time_in_force=TimeInForce.DAY, client_order_id="t-1"))
        found = client.get_order_by_client_id("t-1")  # a GET with a query string
        assert found.id == order.id and float(found.qty or 0) == 2
        with pytest.raises(APIError) as refused:
            client.submit_order(MarketOrderRequest(symbol="NOPE", qty=1, side=OrderSide.BUY,
                                                   time_in_force=TimeInForce.DAY, client_order_id="t-2"))
        assert refused.value.status_code == 422 and "NOPE" in str(refused.value)
        with pytest.raises(APIError) as duplicate:  # the same id twice: the broker refuses, no second order
            client.submit_order(MarketOrderRequest(symbol="TQQQ", qty=2, side=OrderSide.BUY,
                                                   time_in_force=TimeInForce.DAY, client_order_id="t-1"))
        assert duplicate.value.status_code == 422
        assert client.get_clock().is_open  # the connection survived the refusals


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    connections = 0
    delay = 0.0


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        self.server.connections += 1  # type: ignore[attr-defined]

    def do_GET(self) -> None:
        time.sleep(self.server.delay)  # type: ignore[attr-defined]
        body = json.dumps({"path": self.path}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        with contextlib.suppress(OSError):  # the client may have given up waiting
            self.wfile.write(body)
        self.close_connection = self.path.startswith("/close")  # closes without saying so

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[_Server]:
    srv = _Server(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def test_one_connection_is_kept_and_one_closed_by_the_server_is_replaced(server: _Server) -> None:
    base = f"http://127.0.0.1:{server.server_address[1]}"
    session = OrderSession(base, timeout=5.0)
    first = session.request("GET", f"{base}/a", params={"x": "1 2"}, headers={}, allow_redirects=False)
    second = session.request("GET", f"{base}/b", headers={}, allow_redirects=False)
    assert (first.json(), second.json()) == ({"path": "/a?x=1+2"}, {"path": "/b"})
    assert server.connections == 1
    session.request("GET", f"{base}/close", headers={}, allow_redirects=False)
    time.sleep(0.1)  # the server has closed it by now
    assert session.request("GET", f"{base}/c", headers={}, allow_redirects=False).json() == {"path": "/c"}
    assert server.connections == 2
    session.close()


def test_an_answer_too_late_is_a_timeout_and_no_server_is_a_connection_error(server: _Server) -> None:
    base = f"http://127.0.0.1:{server.server_address[1]}"
    session = OrderSession(base, timeout=0.2)
    server.delay = 1.0
    with pytest.raises(requests.Timeout):
        session.request("GET", f"{base}/slow", headers={}, allow_redirects=False)
    server.delay = 0.0
    fast = session.request("GET", f"{base}/fast", headers={}, allow_redirects=False)
    assert fast.status_code == 200  # on a new connection

    nobody = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(requests.ConnectionError):
        OrderSession(nobody, timeout=1.0).request("GET", f"{nobody}/v2/clock", headers={}, allow_redirects=False)


class _FullBudget:
    """A request budget whose window is full for ``wait`` more wall seconds (another process used it)."""

    def __init__(self, wait: float) -> None:
        self.wait = wait
        self.taken = 0

    def try_acquire(self, priority: str) -> float:
        return self.wait

    def acquire(self, priority: str) -> float:  # what a request without a deadline does: wait it out
        self.taken += 1
        return 0.0


def test_an_order_never_waits_in_the_request_budget_past_its_deadline() -> None:
    """A 429 elsewhere holds the budget for 30 s; the order's cut-off is 1 s away: it is refused at once,
    not POSTed 29 s after the cut-off."""
    from datetime import UTC, datetime

    from openbell.ports import Deadline, DeadlinePassed

    session = OrderSession("http://127.0.0.1:9", timeout=1.0, budget=_FullBudget(30.0))  # type: ignore[arg-type]
    session.deadline = Deadline(datetime(2025, 11, 20, 20, 58, tzinfo=UTC), time.time() + 1.0)
    posted: list[str] = []
    started = time.monotonic()
    with pytest.raises(DeadlinePassed, match="cut-off 2025-11-20T20:58:00"):
        session._limited("POST", "http://127.0.0.1:9/v2/orders", lambda: posted.append("POST"))  # type: ignore[func-returns-value,arg-type,return-value]
    assert posted == [] and time.monotonic() - started < 1.0
    session.deadline = Deadline(datetime(2025, 11, 20, 20, 58, tzinfo=UTC), time.time() - 0.1)
    with pytest.raises(DeadlinePassed):  # past it: not even a budget slot is asked for
        session._limited("POST", "http://127.0.0.1:9/v2/orders", lambda: posted.append("POST"))  # type: ignore[func-returns-value,arg-type,return-value]
    assert posted == []
