"""Historical and today's 1-minute bars through alpaca-py: fetch, store, audit for gaps."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
from alpaca.common.exceptions import APIError
from alpaca.data.enums import Adjustment, DataFeed
from alpaca.data.requests import StockBarsRequest
from alpaca.data.timeframe import TimeFrame
from sqlalchemy import Engine, text

from openbell import alpaca as ob_alpaca
from openbell.alpaca import AlpacaConfig
from openbell.calendar import Session, sessions_between
from openbell.store.bars import BAR_COLUMNS, upsert_bars

log = logging.getLogger(__name__)


class UnknownSymbols(ValueError):
    """The broker does not know one or more symbols of the universe."""


@dataclass(frozen=True)
class Window:
    """A half-open interval [start, end) of bar start times, aware UTC."""

    start: datetime
    end: datetime


def check_universe(config: AlpacaConfig, symbols: Sequence[str]) -> None:
    """Refuse, before any download, symbols the broker does not know or cannot trade."""
    client = config.trading_client()
    unknown: list[str] = []
    for symbol in symbols:
        try:
            asset = ob_alpaca.call(client.get_asset, symbol, what=f"get_asset({symbol})", conn_id=config.conn_id)
        except APIError as exc:
            if ob_alpaca.status_of(exc) in (404, 422):
                unknown.append(symbol)
                continue
            raise
        if not getattr(asset, "tradable", True):
            unknown.append(symbol)
    if unknown:
        raise UnknownSymbols(f"the broker does not know or cannot trade: {', '.join(sorted(unknown))}")


def fetch_bars(config: AlpacaConfig, symbols: Sequence[str], window: Window) -> pd.DataFrame:
    """All 1-minute bars of ``symbols`` whose start lies in ``window`` (the SDK pages for us)."""
    if window.end <= window.start or not symbols:
        return pd.DataFrame(columns=list(BAR_COLUMNS))
    client = config.data_client(raw_data=True)
    request = StockBarsRequest(
        symbol_or_symbols=list(symbols),
        timeframe=TimeFrame.Minute,
        start=window.start,
        end=window.end - timedelta(microseconds=1),
        adjustment=Adjustment.RAW,
        feed=DataFeed(config.feed),
    )
    raw: dict[str, list[dict[str, Any]]] = ob_alpaca.call(
        client.get_stock_bars, request, what="get_stock_bars", conn_id=config.conn_id
    )
    return bars_frame(raw)


def bars_frame(raw: dict[str, list[dict[str, Any]]]) -> pd.DataFrame:
    """Alpaca's raw ``{symbol: [{t,o,h,l,c,v,n,vw}]}`` as a long frame with openbell's column names."""
    frames = []
    for symbol, rows in raw.items():
        if not rows:
            continue
        df = pd.DataFrame.from_records(rows)
        df["symbol"] = symbol
        frames.append(df)
    if not frames:
        return pd.DataFrame(columns=list(BAR_COLUMNS))
    df = pd.concat(frames, ignore_index=True)
    df = df.rename(
        columns={"t": "timestamp", "o": "open", "h": "high", "l": "low", "c": "close", "v": "volume",
                 "n": "trade_count", "vw": "vwap"}
    )
    for col in ("trade_count", "vwap"):
        if col not in df:
            df[col] = None
    df["timestamp"] = pd.to_datetime(df["timestamp"], utc=True, format="ISO8601")
    return df[list(BAR_COLUMNS)]


def stored_minutes(engine: Engine, symbols: Sequence[str], window: Window) -> dict[str, set[pd.Timestamp]]:
    """The bar start times already in Postgres for each symbol inside ``window``."""
    out: dict[str, set[pd.Timestamp]] = {s: set() for s in symbols}
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT symbol, ts FROM bars WHERE symbol = ANY(:symbols) AND ts >= :start AND ts < :end"),
            {"symbols": list(symbols), "start": window.start, "end": window.end},
        )
        for symbol, ts in rows:
            out[symbol].add(pd.Timestamp(ts).tz_convert("UTC"))
    return out


def missing_minutes(
    engine: Engine, symbols: Sequence[str], sessions: Iterable[Session], until: datetime
) -> dict[str, dict[str, list[pd.Timestamp]]]:
    """For each symbol and session, the expected minutes before ``until`` that have no stored bar."""
    report: dict[str, dict[str, list[pd.Timestamp]]] = {s: {} for s in symbols}
    for session in sessions:
        expected = [m for m in session.minutes() if m + pd.Timedelta(minutes=1) <= until]
        if not expected:
            continue
        have = stored_minutes(engine, symbols, Window(session.open, min(session.close, until)))
        for symbol in symbols:
            gone = [m for m in expected if m not in have[symbol]]
            if gone:
                report[symbol][session.date.isoformat()] = gone
    return report


def gap_summary(gaps: dict[str, dict[str, list[pd.Timestamp]]], limit: int = 20) -> dict[str, Any]:
    """A JSON-able digest of a gap report: counts per symbol and session, and the first missing minutes."""
    per_symbol: dict[str, dict[str, Any]] = {}
    for symbol, sessions in gaps.items():
        if not sessions:
            continue
        per_symbol[symbol] = {
            day: {"missing": len(ms), "first": [m.isoformat() for m in ms[:limit]]} for day, ms in sessions.items()
        }
    return {
        "missing_minutes": sum(len(ms) for sessions in gaps.values() for ms in sessions.values()),
        "by_symbol": per_symbol,
    }


def download(
    config: AlpacaConfig,
    engine: Engine,
    session: Session,
    now: datetime,
    universe: Sequence[str],
    *,
    days: int = 30,
) -> dict[str, Any]:
    """Fetch and store the sessions of the last ``days`` calendar days, up to ``now`` (today included).

    The window starts at the open of the first session on or after ``days`` before the session's date,
    so every session in it is whole. For a past session ``now`` is its close, so a backfill stores
    exactly that window. Returns the step summary: upsert counts and a per-symbol, per-session gap report.
    """
    end = min(now, session.close)
    sessions = sessions_between(session.date - timedelta(days=days), session.date)
    start = sessions[0].open
    check_universe(config, universe)
    frame = fetch_bars(config, universe, Window(start, end))
    result = upsert_bars(engine, frame, source="rest")
    gaps = missing_minutes(engine, universe, sessions, end)
    return {
        "window": [start.isoformat(), end.isoformat()],
        "sessions": len(sessions),
        "symbols": len(universe),
        "upsert": result.as_dict(),
        "gaps": gap_summary(gaps),
    }


def todays_bars(
    config: AlpacaConfig, engine: Engine, session: Session, now: datetime, universe: Sequence[str]
) -> dict[str, Any]:
    """Fetch today's bars from the open to ``now``, audit every completed minute, refetch gaps once."""
    end = min(now, session.close)
    window = Window(session.open, end)
    frame = fetch_bars(config, universe, window)
    first = upsert_bars(engine, frame, source="rest")
    gaps = missing_minutes(engine, universe, [session], end)
    refetched = 0
    if any(gaps.values()):
        holes = [m for sessions in gaps.values() for ms in sessions.values() for m in ms]
        lo, hi = min(holes), max(holes) + pd.Timedelta(minutes=1)
        symbols = [s for s, sessions in gaps.items() if sessions]
        refill = fetch_bars(config, symbols, Window(lo.to_pydatetime(), hi.to_pydatetime()))
        refetched = upsert_bars(engine, refill, source="rest").written
        gaps = missing_minutes(engine, universe, [session], end)
    return {
        "window": [window.start.isoformat(), end.isoformat()],
        "upsert": first.as_dict(),
        "refetched": refetched,
        "gaps": gap_summary(gaps),
    }
