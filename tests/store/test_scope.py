"""Accounts' state side by side in one database: each account's schema, the shared bars, locks and notifications
keyed by account, and migration 0007 up and down (:mod:`openbell.store.scope`)."""

from __future__ import annotations

import json
import select
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pandas as pd
import psycopg2
import pytest
from alembic import command
from sqlalchemy import Engine, inspect, text
from sqlalchemy.engine import make_url

from dates import SESSION, at_et
from openbell.store import db
from openbell.store.bars import load_bars, upsert_bars
from openbell.store.events import record_event
from openbell.store.ledger import step, steps_for
from openbell.store.scope import (
    account_of,
    account_schema,
    channel,
    lock_key,
    schema_of,
    scoped_url,
    shared_url,
)
from openbell.store.sessions import get_phase, set_phase
from openbell.trading.fence import SessionLock, SessionLocked

URL = "postgresql+psycopg2://openbell:s3cret-pw@127.0.0.1:5432/state"


def test_an_account_url_names_its_schema_and_keeps_the_rest_of_the_url() -> None:
    alpha = scoped_url(URL, "alpha")
    assert schema_of(alpha) == "account_alpha" and account_of(alpha) == "alpha"
    parsed = make_url(alpha)
    assert (parsed.password, parsed.host, parsed.port, parsed.database) == ("s3cret-pw", "127.0.0.1", 5432, "state")
    assert shared_url(alpha) == URL
    assert scoped_url(URL, None) == URL and schema_of(URL) == "public" and account_of(URL) is None


@pytest.mark.parametrize("name", ["", "Alpha", "1st", "a-b", "a" * 21, "x;drop", "public"])
def test_a_name_that_is_not_an_accounts_is_refused(name: str) -> None:
    if name == "public":  # a valid name whose schema is account_public: never the shared one
        assert account_schema(name) == "account_public"
        return
    with pytest.raises(ValueError, match="not an account name"):
        scoped_url(URL, name)


def test_a_url_that_already_sets_libpq_options_is_refused_rather_than_overridden() -> None:
    with pytest.raises(ValueError, match="already sets libpq options"):
        scoped_url(URL + "?options=-csearch_path%3Dother", "alpha")


def test_channels_and_lock_keys_are_the_old_ones_for_the_default_account_and_differ_per_account() -> None:
    assert channel("openbell_rows", "public") == "openbell_rows"
    assert channel("openbell_rows", "account_alpha") == "openbell_rows_account_alpha"
    keys = {lock_key("live-session:2025-11-20", s) for s in ("public", "account_alpha", "account_beta")}
    assert len(keys) == 3
    # the default account's key is the one before accounts existed (a running attempt keeps excluding a new one)
    from openbell.trading.fence import lock_key as session_key

    assert session_key(SESSION) == lock_key("live-session:2025-11-20", "public") == 3661633874571450591


@contextmanager
def _engines(state_url: str, *accounts: str) -> Iterator[list[Engine]]:
    engines = []
    try:
        for account in accounts:
            url = scoped_url(state_url, account)
            db.upgrade(url)
            engines.append(db.make_engine(url))
        yield engines
    finally:
        for e in engines:
            e.dispose()


def _bars() -> pd.DataFrame:
    ts = pd.date_range(at_et("10:00"), periods=3, freq="1min")
    return pd.DataFrame({"symbol": "SPY", "timestamp": ts, "open": 1.0, "high": 1.0, "low": 1.0, "close": 1.0,
                         "volume": 10.0, "trade_count": 1, "vwap": 1.0})


def test_an_accounts_schema_holds_its_state_and_no_bars_which_stay_shared(state_url: str, engine: Engine) -> None:
    with _engines(state_url, "alpha", "beta") as (alpha, beta):
        tables = set(inspect(engine).get_table_names(schema="account_alpha"))
        assert "bars" not in tables
        assert {"orders", "fills", "positions", "step_runs", "trading_sessions", "events", "param_versions",
                "openbell_schema_version"} <= tables
        db.ensure_current(alpha)
        with step(alpha, SESSION, "download", run_id="a"):
            pass
        set_phase(beta, SESSION, "trading")
        assert [s["step"] for s in steps_for(alpha, SESSION)] == ["download"]
        assert steps_for(beta, SESSION) == [] and steps_for(engine, SESSION) == []
        assert get_phase(beta, SESSION) == "trading"
        assert get_phase(alpha, SESSION) is None and get_phase(engine, SESSION) is None
        upsert_bars(alpha, _bars(), source="test")  # bars written for one account are everyone's
        for e in (engine, alpha, beta):
            assert len(load_bars(e, ["SPY"], at_et("09:30"), at_et("16:00"))) == 3


def test_a_new_accounts_schema_is_created_at_first_use_and_never_served_from_the_shared_one(
        state_url: str, engine: Engine) -> None:
    gamma = db.make_engine(scoped_url(state_url, "gamma"))
    try:
        set_phase(engine, SESSION, "trading")
        db.ensure_current(gamma)
        assert "trading_sessions" in inspect(engine).get_table_names(schema="account_gamma")
        assert get_phase(gamma, SESSION) is None
        assert db.account_names(state_url) == ["gamma"]
    finally:
        gamma.dispose()


def test_a_new_account_is_refused_while_the_shared_schema_is_out_of_date(state_url: str) -> None:
    _migrate(state_url, "0006", down=True)
    gamma = db.make_engine(scoped_url(state_url, "gamma"))
    try:
        with pytest.raises(db.SchemaOutOfDate, match=r"revision 0006.*openbell db upgrade"):
            db.ensure_current(gamma)
        assert db.account_names(state_url) == []
    finally:
        gamma.dispose()


def test_upgrading_the_shared_schema_upgrades_every_accounts_schema(state_url: str) -> None:
    with _engines(state_url, "alpha", "beta") as (alpha, beta):
        for target in (scoped_url(state_url, "alpha"), scoped_url(state_url, "beta"), state_url):
            _migrate(target, "0006", down=True)
        assert db.upgrade(state_url) == db.head_revision()
        for e in (alpha, beta):
            db.ensure_current(e)


def test_upgrading_an_account_twice_changes_nothing_and_keeps_its_rows(state_url: str) -> None:
    url = scoped_url(state_url, "alpha")
    with _engines(state_url, "alpha") as (alpha,):
        set_phase(alpha, SESSION, "trading")
        assert db.upgrade(url) == db.head_revision()
        assert get_phase(alpha, SESSION) == "trading"


def test_two_accounts_trade_the_same_session_at_once_but_one_account_only_once(state_url: str) -> None:
    with (_engines(state_url, "alpha", "beta") as (alpha, beta), SessionLock(alpha, SESSION, wait=0),
          SessionLock(beta, SESSION, wait=0), pytest.raises(SessionLocked, match="already being traded")):
        SessionLock(alpha, SESSION, wait=0).acquire()


def _listen(url: str, *channels: str) -> psycopg2.extensions.connection:
    u = make_url(shared_url(url))
    conn = psycopg2.connect(host=u.host, port=u.port, user=u.username, password=u.password, dbname=u.database)
    conn.autocommit = True
    with conn.cursor() as cur:
        for name in channels:
            cur.execute(f"LISTEN {name}")
    return conn


def _heard(conn: psycopg2.extensions.connection, count: int) -> list[tuple[str, dict]]:
    """The next ``count`` notifications (waiting up to 10 s for them), then any that follow within 0.2 s."""
    give_up = time.monotonic() + 10.0
    while len(conn.notifies) < count and time.monotonic() < give_up:
        select.select([conn], [], [], 0.5)
        conn.poll()
    select.select([conn], [], [], 0.2)
    conn.poll()
    heard = [(n.channel, json.loads(n.payload)) for n in conn.notifies]
    conn.notifies.clear()
    return heard


def test_each_accounts_writes_and_events_are_announced_on_its_own_channels(state_url: str, engine: Engine) -> None:
    names = ["openbell_rows", "openbell_rows_account_alpha", "openbell_events", "openbell_events_account_alpha"]
    with _engines(state_url, "alpha") as (alpha,):
        listener = _listen(state_url, *names)
        try:
            set_phase(alpha, SESSION, "trading")
            record_event(alpha, SESSION, "note", {"who": "alpha"})
            heard = _heard(listener, 2)
            assert [(c, p.get("table") or p["kind"]) for c, p in heard] == [
                ("openbell_rows_account_alpha", "trading_sessions"), ("openbell_events_account_alpha", "note")]
            set_phase(engine, SESSION, "trading")
            record_event(engine, SESSION, "note", {"who": "default"})
            assert [c for c, _ in _heard(listener, 2)] == ["openbell_rows", "openbell_events"]
        finally:
            listener.close()


def _migrate(url: str, revision: str, *, down: bool = False) -> None:
    """Move ``url``'s schema (an account's or the shared one) to ``revision``, as ``db.upgrade`` reaches it."""
    engine = db.make_engine(url)
    schema = schema_of(url)
    try:
        cfg = db._alembic_config()
        with engine.begin() as conn:
            conn.execute(text(f'SET LOCAL search_path TO "{schema}", public'))
            cfg.attributes["connection"] = conn
            cfg.attributes["version_table_schema"] = None if schema == "public" else schema
            (command.downgrade if down else command.upgrade)(cfg, revision)
    finally:
        engine.dispose()


def test_migration_0007_goes_down_to_one_channel_and_back_up_without_losing_a_row(state_url: str,
                                                                                 engine: Engine) -> None:
    url = scoped_url(state_url, "alpha")
    with _engines(state_url, "alpha") as (alpha,):
        set_phase(alpha, SESSION, "trading")
        set_phase(engine, SESSION, "pre_open")
        for target in (url, state_url):
            _migrate(target, "0006", down=True)
        assert db.current_revision(alpha) == "0006" and db.current_revision(engine) == "0006"
        listener = _listen(state_url, "openbell_rows", "openbell_rows_account_alpha")
        try:
            set_phase(alpha, SESSION, "liquidating")  # 0002's trigger: every schema on one channel
            assert [c for c, _ in _heard(listener, 1)] == ["openbell_rows"]
            for target in (state_url, url):
                _migrate(target, "head")
            set_phase(alpha, SESSION, "closed")
            assert [c for c, _ in _heard(listener, 1)] == ["openbell_rows_account_alpha"]
        finally:
            listener.close()
        db.ensure_current(alpha)
        assert get_phase(alpha, SESSION) == "closed" and get_phase(engine, SESSION) == "pre_open"
