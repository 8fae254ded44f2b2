"""Where the project and its local state live."""

from __future__ import annotations

import os
from pathlib import Path


def project_dir() -> Path:
    """The project checkout (holding dags/ and plugins/): ``OPENBELL_PROJECT_DIR`` or this package's repo."""
    if os.environ.get("OPENBELL_PROJECT_DIR"):
        return Path(os.environ["OPENBELL_PROJECT_DIR"]).resolve()
    return Path(__file__).resolve().parents[3]


def home_dir() -> Path:
    """Local state (embedded Postgres, Airflow home, simulator data): ``OPENBELL_HOME`` or ``.openbell/``."""
    if os.environ.get("OPENBELL_HOME"):
        return Path(os.environ["OPENBELL_HOME"]).resolve()
    return project_dir() / ".openbell"
