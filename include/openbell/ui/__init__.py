"""The Trading view: a page of the Airflow UI fed by Postgres LISTEN/NOTIFY over a WebSocket.

Importing the package imports nothing of the app (FastAPI, the broker's client, the database driver): Airflow
loads every plugin in every one of its processes (the scheduler, the workers, and the task processes they fork),
while only the api-server serves the view. :func:`create_app` builds it; the plugin mounts a
:class:`~openbell.ui.mount.LazyApp`, which builds it at its first request.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from openbell.ui.app import create_app

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        return importlib.import_module("openbell.ui.app").create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
