"""The local Redis that CeleryExecutor's rehearsals use: on loopback, a password of its own that is on no
command line, gone when stopped; refused with the way to install it when Debian's redis-server is missing."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from openbell.runtime.redis_server import REDIS_BIN, LocalRedis, RedisUnavailable, redis_binary

needs_redis = pytest.mark.skipif(shutil.which(REDIS_BIN) is None and not os.environ.get("CI"),
                                 reason="Debian's redis-server is not installed (`make redis` installs it)")


@needs_redis
def test_a_local_redis_answers_with_its_password_only_and_stops(tmp_path: Path) -> None:
    with LocalRedis(tmp_path / "redis") as redis:
        assert redis.ping()
        password = (tmp_path / "redis" / "password").read_text()
        assert redis.url == f"redis://:{password}@127.0.0.1:{redis.port}/0"
        assert (tmp_path / "redis" / "password").stat().st_mode & 0o077 == 0
        assert (tmp_path / "redis" / "redis.conf").stat().st_mode & 0o077 == 0
        assert redis.proc is not None
        cmdline = Path(f"/proc/{redis.proc.pid}/cmdline").read_bytes().decode(errors="replace")
        assert password not in cmdline
        stranger = LocalRedis(tmp_path / "other")
        stranger.port = redis.port
        (tmp_path / "other").mkdir()
        (tmp_path / "other" / "password").write_text("not-the-password")
        assert not stranger.ping()  # a wrong password gets no PONG
    assert redis.proc.poll() is not None and not redis.ping()


def test_without_redis_server_the_error_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setattr("openbell.runtime.redis_server.Path.exists", lambda self: False)
    with pytest.raises(RedisUnavailable, match="make redis"):
        redis_binary()
