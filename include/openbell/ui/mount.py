"""The Trading view as the plugin mounts it: an ASGI app that builds the real one at its first call.

Airflow's plugin API takes the app object itself, and every Airflow process loads every plugin; building the view
there would import FastAPI, requests, the broker's client and psycopg2 into the scheduler, the workers and the
task processes (about 19 MiB each). Only the api-server ever calls it, so only the api-server builds it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class LazyApp:
    """An ASGI app standing for the one ``build`` returns, which is built at the first call (of any kind:
    HTTP, WebSocket or lifespan) and answers that call and every later one."""

    def __init__(self, build: Callable[[], ASGIApp]) -> None:
        self._build = build
        self._app: ASGIApp | None = None

    @property
    def built(self) -> bool:
        return self._app is not None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._app is None:  # no await before it is set: two first calls cannot both build
            self._app = self._build()
        await self._app(scope, receive, send)


def trading_view() -> LazyApp:
    """The Trading view with its defaults (:func:`openbell.ui.app.create_app`), built at its first request."""

    def build() -> ASGIApp:
        from openbell.ui.app import create_app

        return create_app()

    return LazyApp(build)
