"""The morning data steps against a live simulator and a real Postgres."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import date, timedelta

import pandas as pd
import pytest
from sqlalchemy import text

from dates import SESSION as DAY
from openbell import calendar
from openbell.adapters.alpaca.broker import AlpacaBroker
from openbell.adapters.alpaca.config import AlpacaConfig, CredentialsError
from openbell.adapters.alpaca.data import AlpacaMarketData
from openbell.marketdata import UnknownSymbols, download, todays_bars
from openbell.params import DEFAULT_UNIVERSE
from openbell.sim.testing import SimProcess
from openbell.store.db import make_engine

DENSE = ["--dense"]
SESSION = calendar.session(DAY)
assert SESSION is not None


@pytest.fixture(scope="module")
def sim() -> Iterator[SimProcess]:
    """The session at 11:00 ET, paused-like (1x), so 'now' is mid-morning for the whole module; a bar in
    every minute (``--dense``), so a gap is openbell's."""
    with SimProcess(date=DAY.isoformat(), speed=1, start="11:00", extra_args=DENSE) as s:
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
    assert first["adjustment"] == "split" and first["jumps"] == []


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
    with SimProcess(date=DAY.isoformat(), speed=1, start="11:00", extra_args=[*DENSE, "--rest-error-rate", "0.3"]) as s:
        now = SESSION.open + timedelta(minutes=90)
        summary = download(*_ports(s.config()), engine, SESSION, now, DEFAULT_UNIVERSE, days=30)
        faults = s.faults()
    assert summary["gaps"]["missing_minutes"] == 0
    assert faults["counters"]["rest_429"] + faults["counters"]["rest_500"] >= 3  # the faults did happen


def _sessions_ends(url: str, symbol: str) -> pd.DataFrame:
    """Per session date: the symbol's first open, last close and the adjustments recorded."""
    table = _table_with_adjustment(url)
    table = table[table["symbol"] == symbol].copy()
    table["day"] = table["ts"].dt.tz_convert("America/New_York").dt.date
    return table.groupby("day").agg(first_open=("open", "first"), last_close=("close", "last"),
                                    adjustments=("adjustment", lambda a: sorted(set(a))))


def _table_with_adjustment(url: str) -> pd.DataFrame:
    engine = make_engine(url)
    with engine.connect() as conn:
        df = pd.read_sql(text("SELECT symbol, ts, open, close, adjustment FROM bars ORDER BY symbol, ts"), conn)
    engine.dispose()
    return df


def test_history_across_a_split_is_stored_split_adjusted_and_continuous(state_url: str) -> None:
    """TQQQ reverse-splits 1-for-10 inside the window: a raw store shows the jump, the adjusted download
    replaces every stored bar of the window with prices that run on across the split."""
    engine = make_engine(state_url)
    now = SESSION.open + timedelta(minutes=90)
    split_day = date(2025, 11, 10)
    args = [*DENSE, "--split", "TQQQ:0.1:2025-11-10"]
    with SimProcess(date=DAY.isoformat(), speed=1, start="11:00", extra_args=args) as s:
        raw = download(AlpacaMarketData(s.config(), adjustment="raw"), AlpacaBroker(s.config()), engine, SESSION,
                       now, ["TQQQ", "SQQQ"], days=30)
        raw_ends = _sessions_ends(state_url, "TQQQ")
        adjusted = download(*_ports(s.config()), engine, SESSION, now, ["TQQQ", "SQQQ"], days=30)
    assert raw["adjustment"] == "raw"
    assert [(j["symbol"], j["session"]) for j in raw["jumps"]] == [("TQQQ", split_day.isoformat())]
    assert raw["jumps"][0]["ratio"] == pytest.approx(10, rel=0.1)

    assert adjusted["adjustment"] == "split" and adjusted["jumps"] == []
    assert adjusted["gaps"]["missing_minutes"] == 0 and adjusted["upsert"]["deleted"] == 0
    ends = _sessions_ends(state_url, "TQQQ")
    ratios = ends["first_open"].iloc[1:].to_numpy() / ends["last_close"].iloc[:-1].to_numpy()
    assert ratios == pytest.approx(1, abs=0.1)  # every overnight step, the split's included
    before = ends.index < split_day
    assert (ends["last_close"][before] / raw_ends["last_close"][before]).to_numpy() == pytest.approx(10, rel=1e-3)
    assert (ends["last_close"][~before] == raw_ends["last_close"][~before]).all()
    table = _table_with_adjustment(state_url)
    assert set(table["adjustment"]) == {"split"}


def test_a_split_made_since_the_last_download_rescales_the_stored_window(state_url: str) -> None:
    """Bars stored on 2025-11-19 are on the pre-split scale; TQQQ reverse-splits at the open of the 20th and
    that day's download puts every stored bar of the window on the new scale (a bar it no longer serves,
    of unknown scale, is dropped)."""
    engine = make_engine(state_url)
    split = [*DENSE, "--split", "TQQQ:0.1:2025-11-20"]
    eve = calendar.session(date(2025, 11, 19))
    assert eve is not None
    with SimProcess(date=eve.date.isoformat(), speed=1, start="11:00", extra_args=split) as s:
        first = download(*_ports(s.config()), engine, eve, eve.open + timedelta(minutes=90), ["TQQQ"], days=10)
    assert first["jumps"] == []
    with engine.begin() as conn:  # a bar stored from elsewhere that the REST window will not hold
        conn.execute(text("INSERT INTO bars (symbol, ts, open, high, low, close, volume, source)"
                          " VALUES ('TQQQ', :t, 1, 1, 1, 1, 10, 'stream')"), {"t": eve.close + timedelta(minutes=30)})
    stale = _sessions_ends(state_url, "TQQQ")
    with SimProcess(date=DAY.isoformat(), speed=1, start="11:00", extra_args=split) as s:
        second = download(*_ports(s.config()), engine, SESSION, SESSION.open + timedelta(minutes=90), ["TQQQ"],
                          days=10)
    assert second["jumps"] == [] and second["gaps"]["missing_minutes"] == 0
    assert second["upsert"]["deleted"] == 1
    ends = _sessions_ends(state_url, "TQQQ")
    assert ends.loc[DAY, "first_open"] / ends.loc[eve.date, "last_close"] == pytest.approx(1, abs=0.1)
    common = stale.index.intersection(ends.index).drop(eve.date)  # the eve was stored only up to 11:00
    assert (ends.loc[common, "last_close"] / stale.loc[common, "last_close"]).to_numpy() == pytest.approx(10, rel=1e-3)
    assert set(_table_with_adjustment(state_url)["adjustment"]) == {"split"}
