"""The plugin's Trading view is built where it is served, at its first request: loading the plugin (which every
Airflow process does) imports nothing of the app."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from fastapi.testclient import TestClient

import openbell
from openbell.ui import create_app
from openbell.ui.mount import LazyApp

ROOT = Path(openbell.__file__).resolve().parent.parent.parent
APP = ("fastapi", "starlette", "requests", "psycopg2", "openbell.ui.app", "openbell.report")

# what loading the plugin module adds to an Airflow process that has Airflow's plugin API imported already
LOAD = """
import sys
import airflow.plugins_manager
before = set(sys.modules)
import openbell_ui
print(" ".join(sorted(set(sys.modules) - before)))
"""


def test_loading_the_plugin_imports_nothing_of_the_app() -> None:
    path = f"{ROOT / 'include'}:{ROOT / 'plugins'}"
    done = subprocess.run([sys.executable, "-c", LOAD], capture_output=True, text=True, timeout=120, check=True,
                          env={"PYTHONPATH": path, "PATH": "", "HOME": str(Path.home())})
    added = done.stdout.split()
    assert "openbell_ui" in added and "openbell.ui.mount" in added
    assert not [m for m in added for a in APP if m == a or m.startswith(a + ".")], added


def test_the_view_is_built_at_its_first_request_and_answers_every_one() -> None:
    built: list[int] = []

    def build() -> object:
        built.append(1)
        return create_app("postgresql+psycopg2://u:p@127.0.0.1:9/state", check=lambda _request: None)

    lazy = LazyApp(build)  # type: ignore[arg-type]
    assert not lazy.built and built == []
    with TestClient(lazy) as client:
        first = client.get("/static/icon.svg")
        second = client.get("/", headers={"accept": "text/html"})
    assert (first.status_code, first.json()) == (401, {"detail": "log in to Airflow first"})
    assert second.status_code == 401 and "Log in to" in second.text  # the view's own login page
    assert built == [1] and lazy.built
