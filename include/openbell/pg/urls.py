"""openbell's two databases, the state and Airflow's metadata: their URLs from the environment, else
databases on the embedded server under ``OPENBELL_HOME/pg``, started on demand."""

from __future__ import annotations

import os
from pathlib import Path

from openbell.pg.server import EmbeddedPostgres

STATE_DATABASE = "openbell"
AIRFLOW_DATABASE = "airflow"


def resolve_urls(home: Path) -> tuple[str, str]:
    """(openbell state URL, Airflow metadata URL).

    ``$OPENBELL_DATABASE_URL`` / ``$AIRFLOW__DATABASE__SQL_ALCHEMY_CONN`` when set; otherwise databases
    ``openbell`` / ``airflow`` on the embedded server under ``home / "pg"``, started on demand.
    """
    state = os.environ.get("OPENBELL_DATABASE_URL") or None
    airflow = os.environ.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN") or None
    if state is None or airflow is None:
        server = EmbeddedPostgres(Path(home) / "pg")
        server.start()
        state = state or server.ensure_database(STATE_DATABASE)
        airflow = airflow or server.ensure_database(AIRFLOW_DATABASE)
    return state, airflow
