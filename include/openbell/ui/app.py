"""The Trading view's FastAPI app: the page, three REST routes and the WebSocket, all behind Airflow's login.

Mounted by the plugin under ``/openbell``. Nothing here can place or cancel an order or change the risk
state: the page's controls trigger the account's ``trading_control`` DAG through Airflow's own REST API
(``POST /api/v2/dags/trading_control/dagRuns``, with the user's login; ``trading_control_<name>`` for a named
account), and ``/api/me`` only tells the page whether Airflow would let the user do so. Every route and the
WebSocket show one account (``?account=<name>``, else the first the user may see: :mod:`openbell.ui.accounts`).
Blocking database work runs in threads: the api-server's event loop also serves Airflow's own APIs.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Query, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import FileResponse, HTMLResponse
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from openbell.accounts import control_dag_id
from openbell.adapters.alpaca.config import AlpacaConfig
from openbell.store.scope import DEFAULT_SCHEMA, schema_of, scoped_url
from openbell.ui.accounts import Accounts, AccountsSource, AccountView, file_accounts
from openbell.ui.auth import (
    Authenticator,
    ControlCheck,
    ReadCheck,
    airflow_login,
    airflow_may_control,
    airflow_may_read,
    anyone,
    authenticate,
    request_token,
    same_origin,
    token_expiry,
    user_name,
)
from openbell.ui.hub import TYPES, Client, Hub
from openbell.ui.market import Market, poll_broker
from openbell.ui.snapshot import build_snapshot, latest_session, session_of_run, sessions

log = logging.getLogger(__name__)

STATIC = Path(__file__).with_name("static")
ASSETS = {"app.js": "text/javascript", "app.css": "text/css", "icon.svg": "image/svg+xml"}
LOGIN_PAGE = (
    "<!doctype html><title>openbell: log in</title><p>Log in to <a href='/' target='_top'>Airflow</a>"
    " to see the Trading view.</p>"
)
CLOSE_UNAUTHENTICATED = 4401
CLOSE_POLICY = 1008
CONTROL_ACTIONS = ("halt", "flatten", "resume")  # openbell.workflow.control.ACTIONS


def control_path(dag_id: str) -> str:
    """Where a run of ``dag_id`` is created: Airflow's public REST API, from Airflow's root."""
    return f"api/v2/dags/{dag_id}/dagRuns"


def _state_url() -> str:
    from openbell.workflow.hooks import StateDbHook

    return StateDbHook().get_uri()


def asyncpg_dsn(url: str) -> str:
    """A SQLAlchemy Postgres URL as a libpq/asyncpg DSN."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@dataclass
class Runtime:
    """What the app builds on first use, inside the server's event loop: one LISTEN connection (the hub) and,
    per account viewed, an engine on the account's schema and its broker."""

    url: str  # the state database, as no account's scope
    hub: Hub
    views: dict[str | None, AccountView]
    clock: Market | None = None  # the heartbeats' market clock: the first account's viewed

    async def tick(self) -> dict[str, Any]:
        return await self.clock.clock() if self.clock is not None else {}


class TradingApp:
    """Holds the app's settings and its lazily started runtime."""

    def __init__(self, state_url: str | None, check: Authenticator, may_control: ControlCheck,
                 market: Market | None, heartbeat: float, max_queue: int, stall: float, broker_every: float,
                 accounts: Accounts) -> None:
        self.state_url = state_url
        self.check = check
        self.may_control = may_control
        self.market = market
        self.heartbeat = heartbeat
        self.max_queue = max_queue
        self.stall = stall
        self.broker_every = broker_every
        self.accounts = accounts
        self._runtime: Runtime | None = None
        self._lock = asyncio.Lock()

    async def view(self, account: str | None) -> AccountView:
        """``account``'s engine and broker, the hub listening on its channels (each once per worker); 503
        when the state database cannot be reached."""
        async with self._lock:
            if self._runtime is None:
                url = self.state_url or await asyncio.to_thread(_state_url)
                hub = Hub(asyncpg_dsn(url), None, max_queue=self.max_queue, heartbeat=self.heartbeat,
                          stall=self.stall)
                self._runtime = Runtime(url, hub, {})
                hub.ticker = self._runtime.tick
            rt = self._runtime
            found = rt.views.get(account)
            if found is None:
                found = await self._open(rt, account)
                rt.views[account] = found
                rt.clock = rt.clock or found.market
                found.task = asyncio.create_task(poll_broker(found.market, rt.hub, self.broker_every,
                                                             schema=found.schema))
            return found

    @property
    def hub(self) -> Hub:
        """The hub of the runtime :meth:`view` started."""
        assert self._runtime is not None
        return self._runtime.hub

    async def _open(self, rt: Runtime, account: str | None) -> AccountView:
        from openbell.dberrors import DatabaseUnavailable
        from openbell.store.db import SchemaOutOfDate, ensure_current, make_engine

        url = scoped_url(rt.url, account)
        try:
            engine = await asyncio.to_thread(make_engine, url)
        except DatabaseUnavailable:
            raise HTTPException(503, "the state database is unavailable") from None
        if account is not None:  # an account that never traded: its (empty) schema, never the shared one's rows
            try:
                await asyncio.to_thread(ensure_current, engine)
            except SchemaOutOfDate as exc:
                await asyncio.to_thread(engine.dispose)
                raise HTTPException(503, str(exc)) from None
        try:
            await rt.hub.start()
            await rt.hub.watch(schema_of(url), engine)
        except BaseException:
            await asyncio.to_thread(engine.dispose)
            raise
        if self.market is not None:
            market = self.market
        else:
            conn_id = (await self.accounts.known()).get(account)
            market = Market(functools.partial(AlpacaConfig.from_airflow, conn_id)) if account and conn_id else Market()
        return AccountView(account, schema_of(url), engine, market)

    async def close(self) -> None:
        """Stop listening and drop every client."""
        if self._runtime is not None:
            views = list(self._runtime.views.values())
            for view in views:
                if view.task is not None:
                    view.task.cancel()
            await self._runtime.hub.stop()
            for view in views:
                await asyncio.to_thread(view.engine.dispose)
            self._runtime = None

    async def session_for(self, view: AccountView, date_param: str | None, run_id: str | None) -> date:
        """The session asked for by date or by Airflow run id, else the default one."""
        chosen = _parse_date(date_param)
        if chosen is None and run_id:
            chosen = await asyncio.to_thread(session_of_run, view.engine, run_id)
            if chosen is None:
                raise HTTPException(422, "no session found for that run")
        return chosen or await self.default_session(view)

    async def default_session(self, view: AccountView) -> date:
        """The session shown when none is asked for: the market's today if it is a session, else the newest."""
        today = (await view.market.clock()).get("today")
        if today is not None and _is_session(today):
            return today
        newest = await asyncio.to_thread(latest_session, view.engine)
        return newest or today or date.today()


def _is_session(day: date) -> bool:
    from openbell import calendar

    try:
        return calendar.session(day) is not None
    except Exception:  # outside the calendar's bounds
        return False


def _parse_date(value: str | None) -> date | None:
    if value in (None, ""):
        return None
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise HTTPException(422, f"not a date (YYYY-MM-DD): {value!r}") from None


def create_app(state_url: str | None = None, *, check: Authenticator = airflow_login,
               may_read: ReadCheck | None = None, may_control: ControlCheck = airflow_may_control,
               market: Market | None = None, accounts: AccountsSource = file_accounts,
               heartbeat: float = 5.0, max_queue: int = 1000, stall: float = 1.0,
               broker_every: float = 5.0) -> FastAPI:
    """The Trading view app; ``state_url`` defaults to the ``openbell_db`` connection (no account's scope).

    ``check`` decides who is logged in, ``may_read`` which accounts they see (by an account's ``trading_day``
    DAG; default: Airflow's auth manager when ``check`` is the default, else everyone ``check`` accepts),
    ``may_control`` who is shown an account's controls (by its ``trading_control`` DAG). ``accounts`` lists
    the accounts offered (default: the accounts file's, else the default account). ``market`` serves every
    account (default: each account's own broker connection). Each WebSocket client has ``max_queue`` messages
    of buffer; one whose socket has not taken a message for ``stall`` seconds when that buffer overflows is
    dropped (see :mod:`openbell.ui.hub`).
    """
    reader = may_read or (airflow_may_read if check is airflow_login else anyone)
    trading = TradingApp(state_url, check, may_control, market, heartbeat, max_queue, stall, broker_every,
                         Accounts(accounts, reader))

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield  # runs only when this app is the server's root app; a mounted app lives as long as its worker
        await trading.close()

    app = FastAPI(title="openbell Trading view", docs_url=None, redoc_url=None, openapi_url=None,
                  lifespan=lifespan)
    app.state.trading = trading

    async def user(request: Request) -> Any:
        who = await authenticate(request, trading.check)
        if who is None:
            status = 403 if request_token(request) else 401
            raise HTTPException(status, "log in to Airflow first")
        return who

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> Any:
        from fastapi.responses import JSONResponse

        if exc.status_code in (401, 403) and "text/html" in request.headers.get("accept", ""):
            return HTMLResponse(LOGIN_PAGE, status_code=exc.status_code)
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)

    async def account(request: Request, who: Any = Depends(user)) -> tuple[Any, str | None]:  # noqa: B008
        query = request.query_params
        return who, await trading.accounts.choose(who, query.get("account"), query.get("dag_id"))

    @app.get("/", dependencies=[Depends(account)])
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html",
                            headers={"Cache-Control": "no-store"})

    @app.get("/static/{name}", dependencies=[Depends(user)])
    async def asset(name: str) -> FileResponse:
        if name not in ASSETS:
            raise HTTPException(404, "no such file")
        return FileResponse(STATIC / name, media_type=ASSETS[name])

    @app.get("/api/sessions")
    async def list_sessions(chosen: tuple[Any, str | None] = Depends(account)) -> dict[str, Any]:
        view = await trading.view(chosen[1])
        return {"sessions": await asyncio.to_thread(sessions, view.engine),
                "default": (await trading.default_session(view)).isoformat()}

    @app.get("/api/me")
    async def me(chosen: tuple[Any, str | None] = Depends(account)) -> dict[str, Any]:
        who, name = chosen
        dag_id = control_dag_id(name)
        allowed = await trading.may_control(who, dag_id)
        return {"user": user_name(who), "account": name, "accounts": await trading.accounts.visible(who),
                "control": {"allowed": allowed, "dag_id": dag_id, "path": control_path(dag_id),
                            "actions": list(CONTROL_ACTIONS)}}

    @app.get("/api/snapshot")
    async def snapshot(chosen: tuple[Any, str | None] = Depends(account),
                       date_: str | None = Query(None, alias="date"), run_id: str | None = None) -> dict[str, Any]:
        view = await trading.view(chosen[1])
        session = await trading.session_for(view, date_, run_id)
        return await asyncio.to_thread(build_snapshot, view.engine, session)

    @app.websocket("/ws")
    async def stream(ws: WebSocket) -> None:
        if not same_origin(ws):
            await ws.close(code=CLOSE_POLICY, reason="not from this site")
            return
        who = await authenticate(ws, trading.check)
        if who is None:
            await ws.close(code=CLOSE_UNAUTHENTICATED, reason="log in to Airflow first")
            return
        try:
            name = await trading.accounts.choose(who, ws.query_params.get("account"), ws.query_params.get("dag_id"))
        except HTTPException as exc:
            await refuse(ws, exc)
            return
        expires = token_expiry(request_token(ws) or "")
        if expires is not None and expires <= time.time():
            await ws.close(code=CLOSE_POLICY, reason="login expired")
            return
        await ws.accept()
        try:
            view = await trading.view(name)
            session = await trading.session_for(view, ws.query_params.get("date"), ws.query_params.get("run_id"))
        except HTTPException as exc:
            await ws.send_json({"type": "error", "error": exc.detail})
            await ws.close(code=1011 if exc.status_code >= 500 else CLOSE_POLICY)
            return
        await serve(ws, trading.hub, view.engine, session, expires, schema=view.schema)

    return app


async def refuse(ws: WebSocket, exc: HTTPException) -> None:
    """Refuse a WebSocket handshake: 403 as before accounts existed, else the HTTP answer with its reason
    when the server can send one."""
    if exc.status_code == 403 or "websocket.http.response" not in ws.scope.get("extensions", {}):
        await ws.close(code=CLOSE_UNAUTHENTICATED if exc.status_code == 403 else CLOSE_POLICY, reason="refused")
        return
    from fastapi.responses import JSONResponse

    await ws.send_denial_response(JSONResponse({"detail": exc.detail}, status_code=exc.status_code))


async def serve(ws: WebSocket, hub: Hub, engine: Engine, session: date, expires: float | None = None, *,
                schema: str = DEFAULT_SCHEMA) -> None:
    """Snapshot first, then deltas from the hub (``schema``'s account's only); answer subscriptions and
    heartbeats until the end, or until ``expires`` (epoch seconds, the login's end), when the socket is
    closed with 1008."""

    async def close(code: int, reason: str) -> None:
        await ws.close(code=code, reason=reason)

    client = hub.add(ws.send_text, close, session.isoformat(), start=False, schema=schema)
    expiry = None
    if expires is not None:
        expiry = asyncio.get_running_loop().call_later(max(0.0, expires - time.time()), hub.drop, client,
                                                        CLOSE_POLICY, "login expired")
    try:
        snap = await asyncio.to_thread(build_snapshot, engine, session)
        await ws.send_text(json.dumps({"type": "snapshot", "session": snap["session"], "data": snap}))
        hub.start_client(client)
        known = frozenset(snap["symbols"])
        while client.dropped is None:
            message = await ws.receive_json()
            client.last_seen = time.monotonic()
            if isinstance(message, dict) and message.get("type") == "subscribe":
                client.offer(json.dumps(subscribe(client, message, known)))
            elif not (isinstance(message, dict) and message.get("type") == "pong"):
                client.offer(json.dumps({"type": "error", "error": "unknown message"}))
    except (WebSocketDisconnect, RuntimeError, ValueError):
        pass
    finally:
        if expiry is not None:
            expiry.cancel()
        hub.remove(client)


def subscribe(client: Client, message: dict[str, Any], known_symbols: frozenset[str]) -> dict[str, Any]:
    """Apply a ``subscribe`` message; unknown types or symbols leave the filter as it was."""
    types, symbols = message.get("types"), message.get("symbols")
    problems = []
    if types is not None and not (isinstance(types, list) and all(isinstance(t, str) for t in types)):
        problems.append("types must be a list of names")
    elif types and (bad := sorted(set(types) - TYPES)):
        problems.append(f"unknown types: {', '.join(bad)} (known: {', '.join(sorted(TYPES))})")
    if symbols is not None and not (isinstance(symbols, list) and all(isinstance(s, str) for s in symbols)):
        problems.append("symbols must be a list of names")
    elif symbols and (bad := sorted(set(symbols) - known_symbols)):
        problems.append(f"unknown symbols: {', '.join(bad)}")
    if problems:
        return {"type": "error", "error": "; ".join(problems)}
    client.types = frozenset(types) if types else None
    client.symbols = frozenset(symbols) if symbols else None
    return {"type": "subscribed", "types": sorted(client.types or TYPES),
            "symbols": sorted(client.symbols) if client.symbols else None}
