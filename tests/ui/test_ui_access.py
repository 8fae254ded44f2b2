"""Only a logged-in Airflow user gets the page, its REST routes and its WebSocket."""

from __future__ import annotations

import asyncio

import pytest
import requests
import websockets
from ui_helpers import COOKIE, good_cookie
from websockets.exceptions import InvalidStatus

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
