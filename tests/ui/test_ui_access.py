"""Only a logged-in Airflow user who may read the trading_day DAG gets the page, its REST routes and its
WebSocket; the WebSocket only from the page's own origin, and only while the login lasts."""

from __future__ import annotations

import asyncio
import time
from typing import Any
from urllib.parse import urlsplit

import jwt
import pytest
import requests
import websockets
from ui_helpers import COOKIE, airflow_token, good_cookie, recv_until
from websockets.exceptions import ConnectionClosed, InvalidStatus

PATHS = ("/", "/static/app.js", "/api/sessions", "/api/snapshot", "/api/snapshot?date=2025-11-20")


def test_http_without_login_is_refused(served) -> None:
    for path in PATHS:
        assert requests.get(served.base + path, timeout=10).status_code == 401, path
        bad = requests.get(served.base + path, cookies={COOKIE: "forged"}, timeout=10)
        assert bad.status_code == 403, path
        assert "openbell" not in bad.text.lower() or "log in" in bad.text.lower()


def test_http_with_login_is_served(served) -> None:
    page = requests.get(served.base + "/", cookies=good_cookie(), timeout=10)
    assert page.status_code == 200 and "equity-chart" in page.text
    bearer = requests.get(served.base + "/api/sessions", headers={"Authorization": "Bearer " + good_cookie()[COOKIE]},
                          timeout=10)
    assert bearer.status_code == 200


@pytest.mark.parametrize("headers", [{}, {"Cookie": f"{COOKIE}=forged"}, {"Authorization": "Bearer forged"}])
def test_websocket_without_login_is_refused(served, headers) -> None:
    async def attempt() -> None:
        async with websockets.connect(served.ws, additional_headers=headers, open_timeout=10) as ws:
            await ws.recv()

    with pytest.raises(InvalidStatus) as refused:
        asyncio.run(attempt())
    assert refused.value.response.status_code == 403


def test_airflow_auth_manager_refuses_missing_and_forged_tokens(monkeypatch) -> None:
    """The default check asks Airflow's own auth manager, which rejects a token it did not sign."""
    import jwt
    from airflow.api_fastapi.app import create_auth_manager, purge_cached_app

    from openbell.ui.auth import airflow_user

    monkeypatch.setenv("AIRFLOW__CORE__AUTH_MANAGER",
                       "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager")
    purge_cached_app()
    try:
        create_auth_manager()
        forged = jwt.encode({"sub": "admin", "role": "ADMIN", "aud": "apache-airflow"}, "not-the-key", "HS512")
        assert asyncio.run(airflow_user(forged)) is None
        assert asyncio.run(airflow_user("not-a-jwt")) is None
    finally:
        purge_cached_app()


def _snapshot_over_ws(url: str, headers: dict[str, str], origin: str | None = None) -> dict[str, Any]:
    async def attempt() -> dict[str, Any]:
        async with websockets.connect(url, additional_headers=headers, origin=origin, open_timeout=10) as ws:
            return await recv_until(ws, lambda m: m["type"] == "snapshot")

    return asyncio.run(attempt())


def test_a_user_who_may_not_read_the_trading_day_dag_is_refused(served_airflow, airflow_auth) -> None:
    airflow_auth.denied["outsider"] = {"trading_day"}
    trader, outsider = airflow_token(airflow_auth, "trader"), airflow_token(airflow_auth, "outsider")
    for path in ("/", "/api/sessions", "/api/snapshot?date=2025-11-20"):
        assert requests.get(served_airflow.base + path, cookies={COOKIE: trader}, timeout=10).status_code == 200, path
        refused = requests.get(served_airflow.base + path, cookies={COOKIE: outsider}, timeout=10)
        assert refused.status_code == 403, path
        bearer = requests.get(served_airflow.base + path, headers={"Authorization": f"Bearer {outsider}"}, timeout=10)
        assert bearer.status_code == 403, path
    assert ("outsider", "GET", "trading_day") in airflow_auth.asked

    url = served_airflow.ws + "?date=2025-11-20"
    assert _snapshot_over_ws(url, {"Cookie": f"{COOKIE}={trader}"})["session"] == "2025-11-20"
    with pytest.raises(InvalidStatus) as refused_ws:
        _snapshot_over_ws(url, {"Cookie": f"{COOKIE}={outsider}"})
    assert refused_ws.value.response.status_code == 403


def test_websocket_from_another_origin_is_refused(served) -> None:
    own = urlsplit(served.base)
    cookie = {"Cookie": f"{COOKIE}={good_cookie()[COOKIE]}"}
    foreign = (f"http://{own.hostname}:{own.port + 1}", f"https://{own.netloc}", "http://evil.example",
               f"http://{own.netloc}.evil.example", "null")
    for origin in foreign:
        with pytest.raises(InvalidStatus) as refused:
            _snapshot_over_ws(served.ws, cookie, origin)
        assert refused.value.response.status_code == 403, origin
    for origin in (None, served.base):
        assert _snapshot_over_ws(served.ws, cookie, origin)["type"] == "snapshot", origin


def test_an_open_socket_is_closed_when_its_login_expires(served_airflow, airflow_auth) -> None:
    token = airflow_token(airflow_auth, "trader", seconds=2)
    expires = jwt.decode(token, options={"verify_signature": False})["exp"]

    async def scenario() -> tuple[int, float]:
        async with websockets.connect(served_airflow.ws, additional_headers={"Cookie": f"{COOKIE}={token}"},
                                      open_timeout=10) as ws:
            await recv_until(ws, lambda m: m["type"] == "snapshot")
            try:
                while True:
                    await asyncio.wait_for(ws.recv(), 10)
            except ConnectionClosed as closed:
                return (closed.rcvd.code if closed.rcvd else -1), time.time()

    code, at = asyncio.run(scenario())
    assert code == 1008
    assert at >= expires - 0.2
