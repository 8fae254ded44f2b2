"""The request budget kept in the state database (openbell.adapters.alpaca.pg_budget): one budget per key for
every machine that uses it, on a real Postgres (``state_url``: a fresh database migrated to head)."""

from __future__ import annotations

import logging
import pickle
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest
from sqlalchemy import inspect, text
from sqlalchemy.engine import make_url

from openbell.adapters.alpaca.budget import ORDER, READ, RequestBudget, key_digest
from openbell.adapters.alpaca.config import AlpacaConfig
from openbell.adapters.alpaca.pg_budget import RETRY_SECONDS, PgRequestBudget, connect_dsn
from openbell.store import db
from openbell.store.scope import scoped_url

KEY_ID = "PKBUDGETKEYID0123456"
URL = "http://127.0.0.1:9"


@pytest.fixture
def budgets(state_url: str) -> Iterator[list[PgRequestBudget]]:
    """Budgets made by :func:`make`, closed after the test."""
    made: list[PgRequestBudget] = []
    yield made
    for b in made:
        b.close()


def make(made: list[PgRequestBudget], url: str, *, key: str = "k1", limit: int = 10,
         window: float | None = 60.0, **kw: object) -> PgRequestBudget:
    b = PgRequestBudget(limit, url, key, window=lambda: window, **kw)  # type: ignore[arg-type]
    made.append(b)
    return b


def rows(state_url: str) -> list[tuple[object, ...]]:
    with psycopg2.connect(connect_dsn(state_url)) as conn, conn.cursor() as cur:
        cur.execute("SELECT budget_key, blocked_until, stamps, checked_at, granted FROM public.request_budget")
        found = cur.fetchall()
    conn.close()
    return found


def test_two_machines_on_one_key_share_one_ceiling_and_another_key_has_its_own(
        state_url: str, budgets: list[PgRequestBudget]) -> None:
    one, two = make(budgets, state_url), make(budgets, state_url)
    assert (one.ceiling(READ), one.ceiling(ORDER)) == (8, 9)
    for _ in range(4):
        assert one.try_acquire(READ) == 0.0 and two.try_acquire(READ) == 0.0
    span = one.span()
    assert span is not None
    assert 0 < one.try_acquire(READ) <= span and 0 < two.try_acquire(READ) <= span  # the 9th read waits a window
    other = make(budgets, state_url, key="k2")
    assert [other.try_acquire(READ) for _ in range(8)] == [0.0] * 8
    assert other.try_acquire(READ) > 0


def test_reads_stop_at_their_share_and_orders_go_on_to_theirs(state_url: str, budgets: list[PgRequestBudget]) -> None:
    reader, trader = make(budgets, state_url), make(budgets, state_url)
    assert [reader.try_acquire(READ) for _ in range(8)] == [0.0] * 8
    assert reader.try_acquire(READ) > 0 and trader.try_acquire(READ) > 0
    assert trader.try_acquire(ORDER) == 0.0  # the 9th of 10: orders may use up to 95%
    assert trader.try_acquire(ORDER) > 0 and reader.try_acquire(ORDER) > 0


def test_a_429_seen_by_one_machine_holds_the_other_back(state_url: str, budgets: list[PgRequestBudget]) -> None:
    one, two = make(budgets, state_url, window=1.0), make(budgets, state_url, window=1.0)
    one.block(0.4)
    wait = two.try_acquire(ORDER)
    assert 0.2 < wait <= 0.4
    assert two.acquire(READ) == pytest.approx(wait, abs=0.05)  # waited out, then taken
    one.block(30.0)  # a reset further away than a window cannot be right: at most one window
    assert 0.9 < two.try_acquire(ORDER) <= one.wait_cap() < 1.1


def test_the_window_slides_on_the_databases_clock(state_url: str, budgets: list[PgRequestBudget]) -> None:
    one, two = make(budgets, state_url, limit=5, window=0.3), make(budgets, state_url, limit=5, window=0.3)
    start = time.monotonic()
    assert [(one if i % 2 else two).try_acquire(READ) for i in range(4)] == [0.0] * 4  # ceiling 4 of 5
    span = one.span()
    assert span is not None
    wait = two.try_acquire(READ)
    assert 0 < wait <= span
    waited = one.acquire(READ)  # sleeps until the oldest leaves the window
    assert 0 < waited <= span + 0.05 and time.monotonic() - start >= span * 0.8
    for _ in range(8):  # a long run keeps at most `limit` send times
        one.acquire(ORDER)
    (_, _, stamps, _, _), = rows(state_url)
    assert len(stamps) <= 5 and stamps == sorted(stamps)


def test_concurrent_takes_never_pass_the_ceiling(state_url: str, budgets: list[PgRequestBudget]) -> None:
    machines = [make(budgets, state_url, limit=40) for _ in range(3)]  # read ceiling 32
    granted: list[int] = []

    def take(b: PgRequestBudget) -> None:
        granted.append(sum(b.try_acquire(READ) == 0.0 for _ in range(20)))

    threads = [threading.Thread(target=take, args=(b,)) for b in machines for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(granted) == 32


def test_an_unreachable_database_holds_nothing_back_and_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"postgresql+psycopg2://trader:TopSecret42@127.0.0.1:{port}/openbell"
    slept: list[float] = []
    clock = [0.0]
    b = PgRequestBudget(1, url, "k", window=lambda: 1.0, sleep=slept.append, monotonic=lambda: clock[0])
    with caplog.at_level(logging.INFO, logger="openbell.adapters.alpaca.pg_budget"):
        assert [b.try_acquire(READ) for _ in range(5)] == [0.0] * 5
        b.block(0.5)
        clock[0] += RETRY_SECONDS + 1  # tried again, still down: not logged again
        assert b.try_acquire(ORDER) == 0.0
    assert slept == [0.5]  # a 429 is still waited out by this process
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1 and "not held back" in messages[0]
    assert "TopSecret42" not in messages[0] and f"trader:***@127.0.0.1:{port}" in messages[0]


def test_the_budget_comes_back_when_the_database_does(state_url: str, budgets: list[PgRequestBudget],
                                                      caplog: pytest.LogCaptureFixture) -> None:
    clock = [0.0]
    b = make(budgets, state_url, limit=1, monotonic=lambda: clock[0])
    assert b.try_acquire(ORDER) == 0.0 and b.try_acquire(ORDER) > 0
    with psycopg2.connect(connect_dsn(state_url)) as conn, conn.cursor() as cur:  # the server ends the session
        cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE application_name = 'openbell request budget'")
    conn.close()
    with caplog.at_level(logging.INFO, logger="openbell.adapters.alpaca.pg_budget"):
        assert b.try_acquire(ORDER) == 0.0  # lost: nothing held back
        clock[0] += RETRY_SECONDS + 1
        assert b.try_acquire(ORDER) > 0  # reconnected: the window still holds the first take
    assert [r.levelname for r in caplog.records] == ["WARNING", "INFO"]


def test_the_config_with_a_budget_url_builds_the_database_budget_and_never_shows_or_stores_the_key(
        state_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    plain = AlpacaConfig(KEY_ID, "secret", trading_url=URL, rate_limit=10)  # a window of 60 s: no clock to ask
    assert isinstance(plain.rate_budget(), RequestBudget)  # no budget_url: this host's file, as before
    config = AlpacaConfig(KEY_ID, "secret", trading_url=URL, rate_limit=10, budget_url=state_url)
    password = make_url(state_url).password
    assert password and password not in repr(config) and "budget_url" not in config.to_extra()
    worker = pickle.loads(pickle.dumps(config))  # as an order worker receives its settings
    assert worker.budget_url == state_url
    budget, theirs = config.rate_budget(), worker.rate_budget()
    assert isinstance(budget, PgRequestBudget) and isinstance(theirs, PgRequestBudget)
    try:
        assert budget.key == theirs.key == key_digest(KEY_ID, URL) != key_digest("other", URL)
        assert password not in repr(budget)
        assert config.trading_client()._session.budget is not None  # type: ignore[attr-defined]
        for _ in range(4):
            assert budget.try_acquire(READ) == 0.0 and theirs.try_acquire(READ) == 0.0
        assert theirs.try_acquire(READ) > 0
        stored = rows(state_url)
        assert [r[0] for r in stored] == [key_digest(KEY_ID, URL)]
        assert KEY_ID not in repr(stored) and "secret" not in repr(stored)
    finally:
        budget.close()
        theirs.close()
    assert not list(tmp_path.rglob("*"))  # no budget file was written


def test_the_table_is_shared_and_migration_0008_goes_down_and_up(state_url: str) -> None:
    assert db.upgrade(scoped_url(state_url, "alpha")) == "0008"
    engine = db.make_engine(state_url)
    try:
        assert "request_budget" in inspect(engine).get_table_names()
        assert "request_budget" not in inspect(engine).get_table_names(schema="account_alpha")
        from alembic import command

        for step, target in ((command.downgrade, "0007"), (command.upgrade, "head")):
            cfg = db._alembic_config()
            with engine.begin() as conn:
                cfg.attributes["connection"] = conn
                step(cfg, target)
            present = "request_budget" in inspect(engine).get_table_names()
            assert present == (target == "head")
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM public.request_budget")).scalar_one() == 0
    finally:
        engine.dispose()


def test_a_state_url_becomes_the_libpq_uri_of_the_same_connection() -> None:
    from psycopg2.extensions import parse_dsn

    for url in ("postgresql+psycopg2://u:p%40ss%3Aw%2Fd@127.0.0.1:5432/db",
                "postgresql+psycopg2://u:p@localhost:5432/s?options=-csearch_path%3Dacct_x",
                "postgresql://u@[::1]:5433/db?sslmode=require"):
        dsn = connect_dsn(url)
        assert dsn.startswith("postgresql://") and "psycopg2" not in dsn
        rendered = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        assert parse_dsn(dsn) == parse_dsn(rendered)
    assert parse_dsn(connect_dsn("postgresql://u@h/db?application_name=a%20b"))["application_name"] == "a b"
