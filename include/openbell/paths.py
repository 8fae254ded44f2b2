"""Where the project and its local state live (a leaf: imports nothing of openbell).

Every command resolves local state through :func:`home_dir`, so ``openbell demo``, ``openbell db`` and
``openbell report`` find the same embedded Postgres whatever the working directory.
"""

from __future__ import annotations

import os
from pathlib import Path


def project_dir() -> Path:
    """The project checkout (holding dags/ and plugins/): ``OPENBELL_PROJECT_DIR`` or this package's repo."""
    if os.environ.get("OPENBELL_PROJECT_DIR"):
        return Path(os.environ["OPENBELL_PROJECT_DIR"]).resolve()
    return Path(__file__).resolve().parents[2]  # include/openbell/paths.py -> the checkout


def home_dir() -> Path:
    """Local state (embedded Postgres, Airflow home, simulator data): ``OPENBELL_HOME`` or ``.openbell/``
    in the project, never the working directory."""
    if os.environ.get("OPENBELL_HOME"):
        return Path(os.environ["OPENBELL_HOME"]).resolve()
    return project_dir() / ".openbell"
