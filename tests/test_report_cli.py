"""``openbell report`` as a user runs it: a rehearsed day is found on the embedded server, and a database
that cannot answer gets one line saying what to do."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest

from openbell.pg.databases import drop_database, ensure_database
from openbell.pg.server import EmbeddedPostgres
from openbell.pg.throwaway import reachable_tempdir
from openbell.store.db import make_engine, upgrade
from openbell.store.ledger import step

REHEARSED = date(2025, 11, 28)


@dataclass
class Home:
    """An ``OPENBELL_HOME`` whose embedded server (``home/pg``) runs."""

    path: Path
    server: EmbeddedPostgres

    def database(self, name: str, *, migrated: bool = True) -> str:
        """A fresh database ``name`` on the embedded server, migrated unless told otherwise."""
        drop_database(self.server.url(), name)
        url = ensure_database(self.server.url(), name)
        if migrated:
            upgrade(url)
        return url


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Home]:
    path = reachable_tempdir(tmp_path_factory.mktemp("home"), prefix="openbell-home-")
    server = EmbeddedPostgres(path / "pg", durable=False)
    server.start()
    try:
        yield Home(path, server)
    finally:
        server.stop()
        shutil.rmtree(path, ignore_errors=True)


def _record(url: str, day: date, name: str) -> None:
    engine = make_engine(url)
    try:
        with step(engine, day, name, run_id=f"run-{name}") as record:
            record.summary["market_time"] = f"{day}T14:30:00+00:00"
    finally:
        engine.dispose()


def report(home: Home | Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBELL_DATABASE_URL", "OPENBELL_HOME")}
    env["OPENBELL_HOME"] = str(home.path if isinstance(home, Home) else home)
    return subprocess.run([sys.executable, "-m", "openbell.cli", "report", *args], env=env, capture_output=True,
                          text=True, timeout=120)


def _one_line_error(out: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert out.returncode == 2, (out.stdout, out.stderr)
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert out.stdout == ""
    return lines[0]


def test_a_rehearsed_day_is_read_from_its_own_database(home: Home) -> None:
    _record(home.database("openbell_20251128"), REHEARSED, "wait_for_open")
    _record(home.database("openbell"), REHEARSED, "download")  # the rehearsal's database wins
    out = report(home, "--date", "2025-11-28", "--json")
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got["session"] == "2025-11-28"
    assert [(s["step"], s["status"]) for s in got["steps"]] == [("wait_for_open", "success")]


def test_a_day_without_a_rehearsal_is_read_from_openbell(home: Home) -> None:
    _record(home.database("openbell"), date(2025, 11, 20), "reconcile")
    out = report(home, "--date", "2025-11-20")
    assert out.returncode == 0, out.stderr
    assert "openbell report for session 2025-11-20" in out.stdout and "reconcile" in out.stdout


def test_the_text_report_prints_new_york_times_marked_et(home: Home) -> None:
    _record(home.database("openbell"), date(2025, 11, 20), "wait_for_open")  # market time 14:30 UTC
    out = report(home, "--date", "2025-11-20")
    assert out.returncode == 0, out.stderr
    assert "all times in New York time, ET" in out.stdout
    [line] = [x for x in out.stdout.splitlines() if "wait_for_open" in x]
    assert line.endswith("at 09:30 ET") and "14:30" not in out.stdout, out.stdout


def test_an_unmigrated_rehearsal_database_gets_one_line_saying_what_to_do(home: Home) -> None:
    home.database("openbell_20251201", migrated=False)
    line = _one_line_error(report(home, "--date", "2025-12-01", "--json"),
                           "no openbell schema in", "openbell_20251201", "openbell db upgrade", "--url")
    assert home.server.password not in line


def test_an_empty_database_passed_by_url_gets_one_line(home: Home) -> None:
    url = home.database("scratch_empty", migrated=False)
    line = _one_line_error(report(home, "--date", "2025-11-20", "--url", url), "no openbell schema in",
                           "scratch_empty", "openbell db upgrade --url URL")
    assert home.server.password not in line and "***" in line


def test_a_date_with_nothing_recorded_gets_one_line(home: Home) -> None:
    _record(home.database("openbell"), date(2025, 11, 20), "reconcile")
    _one_line_error(report(home, "--date", "2025-11-21", "--json"), "nothing recorded for session 2025-11-21",
                    "/openbell", "2025-11-20", "openbell demo --date 2025-11-21", "--url")


def test_no_database_for_the_day_on_the_embedded_server(home: Home) -> None:
    drop_database(home.server.url(), "openbell")
    _one_line_error(report(home, "--date", "2025-11-24"), "openbell_20251124", "openbell demo --date 2025-11-24",
                    "--url")


def test_no_embedded_server_is_created_for_a_report(tmp_path: Path) -> None:
    _one_line_error(report(tmp_path, "--date", "2025-11-24"), "no embedded Postgres under",
                    "openbell demo --date 2025-11-24", "--url")
    assert not (tmp_path / "pg").exists()


def test_an_unreachable_server_gets_one_line(home: Home) -> None:
    url = "postgresql+psycopg2://openbell:hunter2@127.0.0.1:9/openbell"
    line = _one_line_error(report(home, "--date", "2025-11-20", "--url", url), "cannot connect")
    assert "hunter2" not in line


def test_a_url_that_is_not_postgres_gets_one_line(home: Home) -> None:
    _one_line_error(report(home, "--date", "2025-11-20", "--url", "sqlite:///state.db"), "needs PostgreSQL")


def test_the_report_reads_the_days_database_from_any_working_directory(home: Home, tmp_path: Path) -> None:
    """Without OPENBELL_HOME the day (demo, airflow), ``openbell db`` and ``openbell report`` all use the
    project's ``.openbell``, never the working directory's."""
    project = tmp_path / "project"
    project.mkdir()
    (project / ".openbell").symlink_to(home.path)  # the project's local state: the running embedded server
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    _record(home.database("openbell_20251128"), REHEARSED, "todays_bars")
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBELL_DATABASE_URL", "OPENBELL_HOME")}
    env["OPENBELL_PROJECT_DIR"] = str(project)

    def openbell(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "openbell.cli", *args], cwd=elsewhere, env=env,
                              capture_output=True, text=True, timeout=120)

    out = openbell("report", "--date", "2025-11-28", "--json")
    assert out.returncode == 0, out.stderr
    assert [(s["step"], s["status"]) for s in json.loads(out.stdout)["steps"]] == [("todays_bars", "success")]
    url = openbell("db", "url")
    assert url.returncode == 0, url.stderr
    assert f"@127.0.0.1:{home.server.port}/openbell" in url.stdout  # the same server, not ./.openbell
    assert not (elsewhere / ".openbell").exists()


def test_an_accounts_day_is_reported_with_account_and_never_in_place_of_another(home: Home) -> None:
    from openbell.store.scope import scoped_url

    url = home.database("openbell_20251128")
    _record(url, REHEARSED, "wait_for_open")  # the default account's
    alpha = scoped_url(url, "alpha")
    upgrade(alpha)
    _record(alpha, REHEARSED, "reconcile")
    out = report(home, "--date", "2025-11-28", "--account", "alpha", "--json")
    assert out.returncode == 0, out.stderr
    assert [s["step"] for s in json.loads(out.stdout)["steps"]] == ["reconcile"]
    default = report(home, "--date", "2025-11-28", "--json")
    assert [s["step"] for s in json.loads(default.stdout)["steps"]] == ["wait_for_open"]
    _one_line_error(report(home, "--date", "2025-11-28", "--account", "beta"), "--account beta",
                    "no state of that account", "accounts there: alpha")
    _one_line_error(report(home, "--date", "2025-11-28", "--account", "Beta!"), "not an account name")
