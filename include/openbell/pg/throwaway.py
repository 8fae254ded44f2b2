"""Throwaway Postgres servers for tests, drills and benches: a directory the server's user can reach, and
a server for a session (an external one from the environment, else an embedded one, deleted on exit)."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from openbell.pg.server import EmbeddedPostgres


def reachable_tempdir(tmp_root: Path, prefix: str = "openbell-pg-") -> Path:
    """A new directory for a throwaway server.

    As root the server runs as another user, who must traverse every parent directory; pytest resets
    ``/tmp/pytest-of-root`` to mode 0700 whenever any session starts, so there the directory is created
    directly in the system temp directory instead of under ``tmp_root``.
    """
    if os.geteuid() == 0:
        return Path(tempfile.mkdtemp(prefix=prefix))
    path = Path(tmp_root) / prefix.rstrip("-")
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def ephemeral_server(tmp_root: Path) -> Iterator[str]:
    """A server URL for a test session.

    ``$OPENBELL_TEST_DATABASE_URL`` when set (its server is used, nothing is started), else an embedded,
    non-durable server (in :func:`reachable_tempdir`) that is stopped and deleted on exit. Pair with
    :func:`~openbell.pg.databases.scratch_database` for a fresh database per test.
    """
    external = os.environ.get("OPENBELL_TEST_DATABASE_URL")
    if external:
        yield external
        return
    root = reachable_tempdir(tmp_root)
    server = EmbeddedPostgres(root / "pg", durable=False)
    try:
        server.start()
        yield server.url()
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
