"""The morning data steps against a live simulator and a real Postgres."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import date, timedelta

import pandas as pd
import pytest
from sqlalchemy import text

from openbell import calendar
from openbell.adapters.alpaca.broker import AlpacaBroker
from openbell.adapters.alpaca.config import AlpacaConfig, CredentialsError
from openbell.adapters.alpaca.data import AlpacaMarketData
from openbell.marketdata import UnknownSymbols, download, todays_bars
from openbell.params import DEFAULT_UNIVERSE
from openbell.sim.testing import SimProcess
from openbell.store.db import make_engine

DAY = date(2025, 11, 20)
SESSION = calendar.session(DAY)
assert SESSION is not None


@pytest.fixture(scope="module")
def sim() -> Iterator[SimProcess]:
    """The session at 11:00 ET, paused-like (1x), so 'now' is mid-morning for the whole module."""
    with SimProcess(date=DAY.isoformat(), speed=1, start="11:00") as s:
        yield s


def _ports(config: AlpacaConfig) -> tuple[AlpacaMarketData, AlpacaBroker]:
    return AlpacaMarketData(config), AlpacaBroker(config)


def _table(url: str) -> pd.DataFrame:
    engine = make_engine(url)
    with engine.connect() as conn:
        df = pd.read_sql(text("SELECT symbol, ts, open, high, low, close, volume, trade_count, vwap, ingested_at"
                              " FROM bars ORDER BY symbol, ts"), conn)
    engine.dispose()
    return df


def test_download_stores_30_days_up_to_now_and_a_rerun_changes_nothing(sim: SimProcess, state_url: str) -> None:
    engine = make_engine(state_url)
    now = SESSION.open + timedelta(minutes=90)
    first = download(*_ports(sim.config()), engine, SESSION, now, DEFAULT_UNIVERSE, days=30)
    table = _table(state_url)
    second = download(*_ports(sim.config()), engine, SESSION, now, DEFAULT_UNIVERSE, days=30)
    assert _table(state_url).equals(table)
    assert second["upsert"]["written"] == 0 and first["upsert"]["written"] == len(table)

    sessions = calendar.sessions_between(DAY - timedelta(days=30), DAY)
    expected = sum(len(s.minutes()) for s in sessions[:-1]) + 90  # today: 09:30 up to 11:00
    per_symbol = table.groupby("symbol").size()
    assert set(per_symbol.index) == set(DEFAULT_UNIVERSE)
    assert (per_symbol == expected).all(), per_symbol
    assert table["ts"].max() == pd.Timestamp(now - timedelta(minutes=1))  # today included, no gap
    assert first["gaps"]["missing_minutes"] == 0


def test_todays_bars_audits_every_minute_so_far(sim: SimProcess, state_url: str) -> None:
    engine = make_engine(state_url)
    now = calendar.next_session(SESSION.open).open + timedelta(minutes=60)
    summary = todays_bars(AlpacaMarketData(sim.config()), engine, SESSION, now, ["TQQQ", "SQQQ"])
    assert summary["gaps"]["missing_minutes"] == 0
    assert summary["upsert"]["written"] == 2 * 60
    # A minute deleted from Postgres is found by the audit and refetched.
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM bars WHERE symbol = 'TQQQ' AND ts = :t"),
                     {"t": SESSION.open + timedelta(minutes=7)})
    summary = todays_bars(AlpacaMarketData(sim.config()), engine, SESSION, now, ["TQQQ", "SQQQ"])
    assert summary["gaps"]["missing_minutes"] == 0
    assert summary["upsert"]["written"] == 1


def test_unknown_symbol_is_refused_before_any_download(sim: SimProcess, state_url: str) -> None:
    engine = make_engine(state_url)
    with pytest.raises(UnknownSymbols, match="NOPE"):
        download(*_ports(sim.config()), engine, SESSION, SESSION.close, ["TQQQ", "NOPE"], days=3)
    assert len(_table(state_url)) == 0


def test_wrong_credentials_fail_at_once_naming_the_connection(sim: SimProcess, state_url: str) -> None:
    config = replace(sim.config(), secret_key="wrong-secret")
    with pytest.raises(CredentialsError) as err:
        download(*_ports(config), make_engine(state_url), SESSION, SESSION.close, ["TQQQ"], days=3)
    assert config.conn_id in str(err.value)
    assert "wrong-secret" not in str(err.value)


def test_download_survives_a_broker_answering_30_percent_of_calls_429_or_500(state_url: str) -> None:
    """A failed page is retried alone: the paginated 30-day request does not restart from its first page."""
    engine = make_engine(state_url)
    with SimProcess(date=DAY.isoformat(), speed=1, start="11:00", extra_args=["--rest-error-rate", "0.3"]) as s:
        now = SESSION.open + timedelta(minutes=90)
        summary = download(*_ports(s.config()), engine, SESSION, now, DEFAULT_UNIVERSE, days=30)
        faults = s.faults()
    assert summary["gaps"]["missing_minutes"] == 0
    assert faults["counters"]["rest_429"] + faults["counters"]["rest_500"] >= 3  # the faults did happen
