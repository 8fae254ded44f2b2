"""Historical and today's 1-minute bars through the market-data port: fetch, store, audit for gaps.

History is split-adjusted as of the download (the port's ``attrs["adjustment"]``, recorded with each bar),
and each day's download replaces the stored bars of its window before today: a split made since an
earlier download rescales them all, so the warmup and the optimizer, which read the store afterwards,
see one scale. Today's bars, streamed raw, are on that scale already (a split takes effect at an open).
"""

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

__all__ = ["SPLIT_LIKE_GAP", "UnknownSymbols", "Window", "check_universe", "download", "gap_summary",
           "missing_minutes", "overnight_jumps", "served_minutes", "stored_minutes", "todays_bars",
           "without_no_trade_minutes"]

log = logging.getLogger(__name__)

# An overnight move of this factor or more, up or down, looks like a split left unadjusted (the smallest
# common split, 2-for-1, is a factor of 2); real gaps this large are rare enough to look at.
SPLIT_LIKE_GAP = 1.8


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


def served_minutes(*frames: pd.DataFrame) -> set[tuple[str, pd.Timestamp]]:
    """The (symbol, minute) pairs the venue served in ``frames``."""
    return {(str(sym), pd.Timestamp(ts).tz_convert("UTC")) for f in frames if not f.empty
            for sym, ts in zip(f["symbol"], f["timestamp"], strict=True)}


def without_no_trade_minutes(
    gaps: dict[str, dict[str, list[pd.Timestamp]]], served: set[tuple[str, pd.Timestamp]]
) -> tuple[dict[str, dict[str, list[pd.Timestamp]]], dict[str, int]]:
    """Split a gap report: minutes the venue served but Postgres lacks (missing data) and, per symbol, the
    count of minutes the venue has no bar for either (no trades in them: nothing is missing)."""
    missing: dict[str, dict[str, list[pd.Timestamp]]] = {}
    no_trades: dict[str, int] = {}
    for symbol, sessions in gaps.items():
        missing[symbol] = {}
        for day, minutes in sessions.items():
            lacking = [m for m in minutes if (symbol, m) in served]
            if lacking:
                missing[symbol][day] = lacking
            if len(minutes) > len(lacking):
                no_trades[symbol] = no_trades.get(symbol, 0) + len(minutes) - len(lacking)
    return missing, no_trades


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


def overnight_jumps(
    engine: Engine, symbols: Sequence[str], sessions: Sequence[Session], *, limit: float = SPLIT_LIKE_GAP
) -> list[dict[str, Any]]:
    """Stored session-to-session moves of ``limit`` or more: a session's first open over the last close
    of the symbol's previous session with bars, for each symbol, sessions in time order."""
    query = text(
        "SELECT b.symbol, s.open_at, (array_agg(b.open ORDER BY b.ts))[1], (array_agg(b.close ORDER BY b.ts DESC))[1]"
        " FROM unnest(CAST(:opens AS timestamptz[]), CAST(:closes AS timestamptz[])) AS s(open_at, close_at)"
        " JOIN bars b ON b.ts >= s.open_at AND b.ts < s.close_at"
        " WHERE b.symbol = ANY(:symbols) GROUP BY b.symbol, s.open_at ORDER BY b.symbol, s.open_at"
    )
    params = {"opens": [s.open for s in sessions], "closes": [s.close for s in sessions], "symbols": list(symbols)}
    with engine.connect() as conn:
        rows = conn.execute(query, params).all()
    jumps: list[dict[str, Any]] = []
    previous: dict[str, float] = {}
    for symbol, open_at, first_open, last_close in rows:
        before = previous.get(symbol)
        previous[symbol] = float(last_close)
        if before is None:
            continue
        ratio = float(first_open) / before
        if ratio >= limit or ratio <= 1 / limit:
            day = pd.Timestamp(open_at).tz_convert("America/New_York").date().isoformat()
            jumps.append({"symbol": symbol, "session": day, "previous_close": before,
                          "open": float(first_open), "ratio": round(ratio, 4)})
    return jumps


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
    exactly that window. The stored bars of the sessions before this one become exactly the fetched ones
    (a bar the venue no longer serves is deleted: its scale is unknown). Returns the step summary: upsert
    counts, the adjustment, a per-symbol, per-session gap report and the split-like overnight jumps
    left in the stored window (:func:`overnight_jumps`).
    """
    end = min(now, session.close)
    sessions = sessions_between(session.date - timedelta(days=days), session.date)
    start = sessions[0].open
    check_universe(broker, universe)
    frame = data.bars(universe, Window(start, end))
    adjustment = str(frame.attrs.get("adjustment", "raw"))
    result = upsert_bars(engine, frame, source="rest", adjustment=adjustment, replace=(start, session.open))
    gaps, no_trades = without_no_trade_minutes(missing_minutes(engine, universe, sessions, end),
                                               served_minutes(frame))
    jumps = overnight_jumps(engine, universe, sessions)
    if jumps:
        log.warning("split-like overnight jumps in the stored %s bars: %s", adjustment, jumps)
    return {
        "window": [start.isoformat(), end.isoformat()],
        "sessions": len(sessions),
        "symbols": len(universe),
        "adjustment": adjustment,
        "upsert": result.as_dict(),
        "gaps": gap_summary(gaps),
        "no_trade_minutes": no_trades,
        "jumps": jumps,
    }


def todays_bars(
    data: MarketDataPort, engine: Engine, session: Session, now: datetime, universe: Sequence[str]
) -> dict[str, Any]:
    """Fetch today's bars from the open to ``now``, audit every completed minute, refetch gaps once.

    A minute the venue has no bar for (no trades in it) is counted in ``no_trade_minutes``, not reported
    as a gap; ``gaps`` lists only minutes the venue served that Postgres still lacks."""
    end = min(now, session.close)
    window = Window(session.open, end)
    frame = data.bars(universe, window)
    first = upsert_bars(engine, frame, source="rest")
    served = served_minutes(frame)
    gaps = missing_minutes(engine, universe, [session], end)
    refetched = 0
    if any(gaps.values()):
        holes = [m for sessions in gaps.values() for ms in sessions.values() for m in ms]
        lo, hi = min(holes), max(holes) + pd.Timedelta(minutes=1)
        symbols = [s for s, sessions in gaps.items() if sessions]
        refill = data.bars(symbols, Window(lo.to_pydatetime(), hi.to_pydatetime()))
        refetched = upsert_bars(engine, refill, source="rest").written
        served |= served_minutes(refill)
        gaps = missing_minutes(engine, universe, [session], end)
    gaps, no_trades = without_no_trade_minutes(gaps, served)
    return {
        "window": [window.start.isoformat(), end.isoformat()],
        "upsert": first.as_dict(),
        "refetched": refetched,
        "gaps": gap_summary(gaps),
        "no_trade_minutes": no_trades,
    }
