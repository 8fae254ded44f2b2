"""Historical and today's 1-minute bars through the market-data port: fetch, store, audit for gaps."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
from sqlalchemy import Engine, text

from openbell.calendar import Session, sessions_between
from openbell.ports import BrokerPort, MarketDataPort, Window
from openbell.store.bars import upsert_bars

__all__ = ["UnknownSymbols", "Window", "check_universe", "download", "gap_summary", "missing_minutes",
           "stored_minutes", "todays_bars"]

log = logging.getLogger(__name__)


class UnknownSymbols(ValueError):
    """The broker does not know one or more symbols of the universe."""


def check_universe(broker: BrokerPort, symbols: Sequence[str]) -> None:
    """Refuse, before any download, symbols the broker does not know or cannot trade."""
    unknown = [symbol for symbol in symbols if not broker.asset_tradable(symbol)]
    if unknown:
        raise UnknownSymbols(f"the broker does not know or cannot trade: {', '.join(sorted(unknown))}")


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
    data: MarketDataPort,
    broker: BrokerPort,
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
    check_universe(broker, universe)
    frame = data.bars(universe, Window(start, end))
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
    data: MarketDataPort, engine: Engine, session: Session, now: datetime, universe: Sequence[str]
) -> dict[str, Any]:
    """Fetch today's bars from the open to ``now``, audit every completed minute, refetch gaps once."""
    end = min(now, session.close)
    window = Window(session.open, end)
    frame = data.bars(universe, window)
    first = upsert_bars(engine, frame, source="rest")
    gaps = missing_minutes(engine, universe, [session], end)
    refetched = 0
    if any(gaps.values()):
        holes = [m for sessions in gaps.values() for ms in sessions.values() for m in ms]
        lo, hi = min(holes), max(holes) + pd.Timedelta(minutes=1)
        symbols = [s for s, sessions in gaps.items() if sessions]
        refill = data.bars(symbols, Window(lo.to_pydatetime(), hi.to_pydatetime()))
        refetched = upsert_bars(engine, refill, source="rest").written
        gaps = missing_minutes(engine, universe, [session], end)
    return {
        "window": [window.start.isoformat(), end.isoformat()],
        "upsert": first.as_dict(),
        "refetched": refetched,
        "gaps": gap_summary(gaps),
    }
