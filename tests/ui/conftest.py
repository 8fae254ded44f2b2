"""The Trading view app on a real uvicorn server (loopback), with a stand-in for Airflow's login."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from ui_helpers import serving, stand_in_login

from openbell.ui import create_app


@dataclass
class Served:
    base: str
    app: Any

    @property
    def ws(self) -> str:
        return self.base.replace("http://", "ws://") + "/ws"


@pytest.fixture
def served(state_url: str) -> Iterator[Served]:
    """The app over a fresh state database, heartbeats every 0.5 s, no broker."""
    from openbell.ui.market import Market

    def no_broker() -> Any:
        raise RuntimeError("no broker in this test")

    app = create_app(state_url, check=stand_in_login, market=Market(no_broker), heartbeat=0.5)
    with serving(app) as base:
        yield Served(base, app)
