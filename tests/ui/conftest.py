"""The Trading view app on a real uvicorn server (loopback), with a stand-in for Airflow's login or Airflow's own."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from ui_helpers import PerDagAuthManager, no_broker, serving, stand_in_login

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

    app = create_app(state_url, check=stand_in_login, market=Market(no_broker), heartbeat=0.5)
    with serving(app) as base:
        yield Served(base, app)


@pytest.fixture
def airflow_auth(monkeypatch: pytest.MonkeyPatch, pg_server_url: str) -> Iterator[PerDagAuthManager]:
    """Airflow's auth manager (simple, with per-DAG grants), its revoked-token table in a scratch database."""
    from airflow import settings
    from airflow.api_fastapi.app import create_auth_manager, purge_cached_app
    from airflow.models.revoked_token import RevokedToken
    from sqlalchemy import create_engine
    from sqlalchemy.orm import scoped_session, sessionmaker

    from openbell.pg.databases import scratch_database

    monkeypatch.setenv("AIRFLOW__CORE__AUTH_MANAGER", "ui_helpers.PerDagAuthManager")
    monkeypatch.setattr(PerDagAuthManager, "denied", {})
    monkeypatch.setattr(PerDagAuthManager, "asked", [])
    with scratch_database(pg_server_url, prefix="af") as url:
        engine = create_engine(url)
        RevokedToken.__table__.create(engine)
        monkeypatch.setattr(settings, "Session", scoped_session(sessionmaker(bind=engine)))
        purge_cached_app()
        try:
            manager = create_auth_manager()
            assert isinstance(manager, PerDagAuthManager)
            yield manager
        finally:
            purge_cached_app()
            settings.Session.remove()
            engine.dispose()


@pytest.fixture
def served_airflow(state_url: str, airflow_auth: PerDagAuthManager) -> Iterator[Served]:
    """The app as the plugin mounts it (Airflow's auth manager decides), heartbeats every minute, no broker."""
    from openbell.ui.market import Market

    app = create_app(state_url, market=Market(no_broker), heartbeat=60)
    with serving(app) as base:
        yield Served(base, app)
