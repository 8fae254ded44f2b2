"""Who may see the Trading view: a user logged in to Airflow (its ``_token`` cookie or a bearer token).

Airflow does not authenticate a plugin's app by itself; every route and the WebSocket check the token
through Airflow's auth manager and ask it whether the user may view the website.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import HTTPConnection

COOKIE = "_token"  # airflow.api_fastapi.auth.managers.base_auth_manager.COOKIE_NAME_JWT_TOKEN

# token -> user, or None when the token is not good enough (absent, invalid, expired, not allowed)
Authenticator = Callable[[str], Awaitable[Any | None]]


def request_token(conn: HTTPConnection) -> str | None:
    """The bearer token if given, else the Airflow session cookie."""
    header = conn.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return conn.cookies.get(COOKIE) or None


async def airflow_user(token: str) -> Any | None:
    """The Airflow user behind ``token`` if the auth manager accepts it and lets them view the website."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import AccessView

    manager = get_auth_manager()
    try:
        user = await manager.get_user_from_token(token)
    except Exception:
        return None
    if not manager.is_authorized_view(access_view=AccessView.WEBSITE, user=user):
        return None
    return user


async def authenticate(conn: HTTPConnection, check: Authenticator) -> Any | None:
    """The user of this request or WebSocket, or None."""
    token = request_token(conn)
    if not token:
        return None
    return await check(token)
