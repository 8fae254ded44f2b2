"""One home for local state: ``OPENBELL_HOME``, else the project's ``.openbell``, whatever the working directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from openbell import paths
from openbell.runtime import db_cli


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENBELL_HOME", raising=False)
    monkeypatch.delenv("OPENBELL_PROJECT_DIR", raising=False)


def test_home_is_the_projects_whatever_the_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    checkout = Path(__file__).resolve().parents[1]
    assert paths.project_dir() == checkout and (checkout / "dags").is_dir()
    here = paths.home_dir()
    monkeypatch.chdir(tmp_path)
    assert paths.home_dir() == here == checkout / ".openbell"


def test_openbell_home_comes_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENBELL_PROJECT_DIR", str(tmp_path / "project"))
    assert paths.home_dir() == (tmp_path / "project" / ".openbell").resolve()
    monkeypatch.setenv("OPENBELL_HOME", str(tmp_path / "state"))
    monkeypatch.chdir(tmp_path)
    assert paths.home_dir() == (tmp_path / "state").resolve()


def test_openbell_db_resolves_the_same_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Path] = []
    monkeypatch.setattr(db_cli, "resolve_urls", lambda home: (seen.append(home), ("postgresql://s", "x"))[1])
    monkeypatch.chdir(tmp_path)
    assert db_cli._state_url(None) == "postgresql://s"
    assert seen == [paths.home_dir()] and tmp_path not in seen[0].parents
