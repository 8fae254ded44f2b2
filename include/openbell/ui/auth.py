"""Who may see the Trading view: a user logged in to Airflow (its ``_token`` cookie or a bearer token) who
may read an account's ``trading_day`` DAG; who is shown its controls; and from where its WebSocket may be opened.

Airflow does not authenticate a plugin's app by itself; every route and the WebSocket check the token
through Airflow's auth manager and ask it whether the user may view the website and read the DAG of the
account shown: ``trading_day`` for the default account, ``trading_day_<name>`` for a named one
(:func:`openbell.accounts.day_dag_id`). The controls are shown to a user the auth manager lets create runs of
the account's ``trading_control`` (``trading_control_<name>``, :func:`openbell.accounts.control_dag_id`); they
trigger that DAG through Airflow's own REST API, where the auth manager decides again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import HTTPConnection

from openbell.accounts import CONTROL_DAG, DAY_DAG

COOKIE = "_token"  # airflow.api_fastapi.auth.managers.base_auth_manager.COOKIE_NAME_JWT_TOKEN
DEFAULT_PORTS = {"http": 80, "https": 443}

# token -> user, or None when the token is not good enough (absent, invalid, expired, not allowed)
Authenticator = Callable[[str], Awaitable[Any | None]]
# (user as an Authenticator returned it, DAG id) -> whether they may read that DAG / create runs of it
ReadCheck = Callable[[Any, str], Awaitable[bool]]
ControlCheck = Callable[[Any, str], Awaitable[bool]]


def request_token(conn: HTTPConnection) -> str | None:
    """The bearer token if given, else the Airflow session cookie."""
    header = conn.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return conn.cookies.get(COOKIE) or None


async def airflow_login(token: str) -> Any | None:
    """The Airflow user behind ``token`` if the auth manager accepts it and lets them view the website
    (which accounts they see is :func:`airflow_may_read`'s answer)."""
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


async def airflow_may_read(user: Any, dag_id: str = DAY_DAG) -> bool:
    """Whether Airflow's auth manager lets ``user`` read the DAG ``dag_id``."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagDetails

    try:
        return bool(get_auth_manager().is_authorized_dag(method="GET", details=DagDetails(id=dag_id), user=user))
    except Exception:
        return False


async def airflow_user(token: str) -> Any | None:
    """The Airflow user behind ``token`` if the auth manager accepts it, lets them view the website and
    read the ``trading_day`` DAG (the default account's)."""
    user = await airflow_login(token)
    if user is None or not await airflow_may_read(user, DAY_DAG):
        return None
    return user


async def airflow_may_control(user: Any, dag_id: str = CONTROL_DAG) -> bool:
    """Whether Airflow's auth manager lets ``user`` create runs of ``dag_id`` (an account's
    ``trading_control``; what ``POST /api/v2/dags/<dag_id>/dagRuns`` requires)."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails

    try:
        return bool(get_auth_manager().is_authorized_dag(method="POST", access_entity=DagAccessEntity.RUN,
                                                         details=DagDetails(id=dag_id), user=user))
    except Exception:
        return False


async def anyone(_user: Any, _dag_id: str) -> bool:
    """A read check for an app whose own ``check`` already decided everything (a test's stand-in login)."""
    return True


def user_name(user: Any) -> str | None:
    """The name Airflow shows for ``user`` (an auth manager's user, or a test's mapping)."""
    if isinstance(user, dict):
        return user.get("username")
    get_name = getattr(user, "get_name", None)
    return str(get_name()) if callable(get_name) else None


async def authenticate(conn: HTTPConnection, check: Authenticator) -> Any | None:
    """The user of this request or WebSocket, or None."""
    token = request_token(conn)
    if not token:
        return None
    return await check(token)


def token_expiry(token: str) -> float | None:
    """The ``exp`` claim (epoch seconds) of a JWT already accepted by the auth manager, or None."""
    import jwt

    try:
        exp = jwt.decode(token, options={"verify_signature": False}).get("exp")
    except jwt.PyJWTError:
        return None
    return float(exp) if isinstance(exp, int | float) else None


def _origin(scheme: str, netloc: str) -> tuple[str, str, int] | None:
    try:
        parts = urlsplit(f"{scheme}://{netloc}")
        port = parts.port or DEFAULT_PORTS.get(scheme)
    except ValueError:
        return None
    if not parts.hostname or port is None or parts.path or parts.username is not None:
        return None
    return scheme, parts.hostname, port


def same_origin(conn: HTTPConnection) -> bool:
    """Whether a WebSocket handshake may proceed: no ``Origin`` (not a browser), or the connection's own.

    Its own origin is the scheme the server saw (``ws``/``wss`` as ``http``/``https``; behind a proxy, what
    the server's trusted proxy headers made of it) with the ``Host`` header. ``X-Forwarded-Host`` is not read.
    """
    origin = conn.headers.get("origin")
    if origin is None:
        return True
    theirs = urlsplit(origin.strip())
    if theirs.scheme.lower() not in DEFAULT_PORTS or theirs.path or theirs.query or theirs.fragment:
        return False
    own_scheme = {"ws": "http", "wss": "https"}.get(conn.url.scheme, conn.url.scheme)
    own = _origin(own_scheme, conn.headers.get("host", ""))
    return own is not None and _origin(theirs.scheme.lower(), theirs.netloc) == own
