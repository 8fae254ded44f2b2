"""Where ``openbell backtest`` gets its bars: openbell's Postgres (what the data steps stored), or the
simulator's market, started on loopback and read through openbell's Alpaca market-data adapter.

Every refusal is a :class:`BacktestInputError` whose message is one line saying what to do.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
from sqlalchemy import Engine, text

from openbell import calendar
from openbell.calendar import ET, Session
from openbell.dberrors import redact
from openbell.runtime.state_db import openbell_engine

Progress = Callable[[str], None]
EDGE = timedelta(minutes=15)  # a stored session whose bars start later or end earlier than this is partial
LISTED = 10  # sessions or symbols named in a message at most


class BacktestInputError(Exception):
    """The backtest cannot run on what it was given; the message (one line) says why and what to do."""


@dataclass(frozen=True)
class Span:
    """The sessions a backtest evaluates, and the warm-up sessions before them."""

    warmup: list[Session]
    sessions: list[Session]

    @property
    def all(self) -> list[Session]:
        return [*self.warmup, *self.sessions]


def span(start: date, end: date, warmup: int) -> Span:
    """The NYSE sessions from ``start`` to ``end`` (both included) and the ``warmup`` ones before."""
    if start > end:
        raise BacktestInputError(f"--from {start} is after --to {end}")
    try:
        sessions = calendar.sessions_between(start, end)
        if not sessions:
            raise BacktestInputError(f"no NYSE session from {start} to {end} (weekends and holidays only)")
        return Span(calendar.previous_sessions(sessions[0].date, warmup), sessions)
    except calendar.CalendarRangeError as exc:
        raise BacktestInputError(str(exc)) from None


def _listed(items: Sequence[str]) -> str:
    more = f" and {len(items) - LISTED} more" if len(items) > LISTED else ""
    return ", ".join(items[:LISTED]) + more


# -- openbell's Postgres --------------------------------------------------------------------------------


def state_url(url: str | None, home: Path) -> str:
    """``url``, else ``$OPENBELL_DATABASE_URL``, else the ``openbell`` database of the embedded server under
    ``home/pg`` (started if it is not running), which must exist."""
    from openbell.pg.server import EmbeddedPostgres
    from openbell.pg.urls import STATE_DATABASE
    from openbell.store.db import make_engine

    if url or os.environ.get("OPENBELL_DATABASE_URL"):
        return str(url or os.environ["OPENBELL_DATABASE_URL"])
    todo = "pass --db URL, or backtest the simulator's market with --sim"
    server = EmbeddedPostgres(home / "pg")
    if not (server.pgdata / "PG_VERSION").exists():
        raise BacktestInputError(f"no embedded Postgres under {server.data_dir} and no OPENBELL_DATABASE_URL: {todo}")
    server.start()
    engine = make_engine(server.url(), pool_size=1, max_overflow=0)
    try:
        with engine.connect() as conn:
            there = conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": STATE_DATABASE}).first()
    finally:
        engine.dispose()
    if there is None:
        raise BacktestInputError(f"no database {STATE_DATABASE} on the embedded Postgres under {server.data_dir}:"
                                 f" {todo}")
    return server.url(STATE_DATABASE)


_STORED_SYMBOLS = text(
    "WITH RECURSIVE t(s) AS (SELECT min(symbol) FROM bars UNION ALL"
    " SELECT (SELECT min(symbol) FROM bars WHERE symbol > t.s) FROM t WHERE t.s IS NOT NULL)"
    " SELECT s FROM t WHERE s IS NOT NULL LIMIT 200"
)
_PER_SESSION = text(
    "SELECT s.i, b.symbol, min(b.ts), max(b.ts) FROM unnest(CAST(:opens AS timestamptz[]),"
    " CAST(:closes AS timestamptz[])) WITH ORDINALITY AS s(open_at, close_at, i)"
    " JOIN bars b ON b.ts >= s.open_at AND b.ts < s.close_at WHERE b.symbol = ANY(:symbols) GROUP BY s.i, b.symbol"
)


def missing_sessions(engine: Engine, universe: Sequence[str], sessions: Sequence[Session]) -> list[str]:
    """Each session whose stored bars are not whole, with what is missing: no bar at all, no bar of some
    symbols, or bars only for part of the session (starting or ending more than 15 minutes from the bell)."""
    params = {"opens": [s.open for s in sessions], "closes": [s.close for s in sessions], "symbols": list(universe)}
    seen: dict[int, dict[str, tuple[pd.Timestamp, pd.Timestamp]]] = {}
    with engine.connect() as conn:
        for i, symbol, first, last in conn.execute(_PER_SESSION, params):
            seen.setdefault(int(i) - 1, {})[symbol] = (pd.Timestamp(first), pd.Timestamp(last))
    out = []
    for i, s in enumerate(sessions):
        held = seen.get(i, {})
        lacking = [sym for sym in universe if sym not in held]
        if not held:
            out.append(f"{s.date} (no bars)")
        elif lacking:
            out.append(f"{s.date} (none of {', '.join(lacking)})")
        else:
            first = min(a for a, _ in held.values())
            last = max(b for _, b in held.values()) + pd.Timedelta(minutes=1)
            if first > s.open + EDGE or last < s.close - EDGE:
                out.append(f"{s.date} (bars only {first.tz_convert(ET):%H:%M}-{last.tz_convert(ET):%H:%M} ET)")
    return out


def stored_bars(url: str, universe: Sequence[str], when: Span, progress: Progress) -> pd.DataFrame:
    """The stored bars of ``universe`` over ``when``'s sessions, loaded a session at a time; refused when a
    symbol has no bar stored at all or a session's bars are not whole."""
    from openbell.store.bars import load_bars

    where = redact(url)
    hint = "run `openbell db upgrade`, pass --db URL of the database the data steps store bars in, or use --sim"
    with openbell_engine(url, table="bars", refuse=BacktestInputError, hint=hint) as engine:
        with engine.connect() as conn:
            stored = list(conn.execute(_STORED_SYMBOLS).scalars())
        unknown = [s for s in universe if s not in stored]
        if stored and unknown:
            raise BacktestInputError(f"unknown symbol(s) {', '.join(unknown)}: no bar of them is stored in {where}"
                                     f" (stored: {_listed(stored)})")
        gaps = missing_sessions(engine, universe, when.all)
        if gaps:
            sessions = when.all
            warm = f", with the {len(when.warmup)} warm-up session(s) before --from" if when.warmup else ""
            raise BacktestInputError(
                f"bars missing in {where} for {len(gaps)} of {len(sessions)} session(s){warm}: {_listed(gaps)};"
                f" store them with `airflow backfill create --dag-id trading_day --from-date {sessions[0].date}"
                f" --to-date {sessions[-1].date}T23:59` (the download step, docs/day.md), pass --warmup-sessions,"
                " or backtest the simulator's market with --sim")
        frames = []
        for n, s in enumerate(when.all, 1):
            frames.append(load_bars(engine, universe, s.open, s.close))
            progress(f"loaded {s.date} ({n}/{len(when.all)}), {len(frames[-1])} bars")
        return pd.concat(frames, ignore_index=True)


# -- the simulator's market -----------------------------------------------------------------------------


def simulator_bars(universe: Sequence[str], when: Span, progress: Progress) -> pd.DataFrame:
    """The simulator's minute bars of ``universe`` over ``when``'s sessions: a simulator on loopback whose
    market clock stands before the next session's open, asked through the Alpaca market-data adapter."""
    from openbell.adapters.alpaca.venue import alpaca_venue
    from openbell.marketdata import UnknownSymbols, check_universe
    from openbell.ports import Window
    from openbell.sim.testing import SimProcess

    try:
        after = calendar.next_session(when.sessions[-1].close)
    except calendar.CalendarRangeError as exc:
        raise BacktestInputError(f"the simulator plays the session after --to: {exc}") from None
    with SimProcess(date=after.date.isoformat(), speed=1.0, start="09:00") as sim:
        venue = alpaca_venue(sim.config(), attempts=1)
        try:
            check_universe(venue.broker, universe)
        except UnknownSymbols as exc:
            raise BacktestInputError(f"unknown symbol(s): the simulator {str(exc).removeprefix('the broker ')}")\
                from None
        progress(f"simulator on {sim.base_url}, its market clock at {after.date} 09:00 ET")
        frames = []
        for n, s in enumerate(when.all, 1):
            frames.append(venue.market_data.bars(list(universe), Window(s.open, s.close)))
            progress(f"fetched {s.date} ({n}/{len(when.all)}), {len(frames[-1])} bars")
    if all(f.empty for f in frames):
        raise BacktestInputError(f"the simulator served no bar of {', '.join(universe)} from {when.all[0].date}"
                                 f" to {when.all[-1].date}")
    frame = pd.concat([f for f in frames if not f.empty], ignore_index=True)
    frame.attrs["adjustment"] = frames[0].attrs.get("adjustment", "raw")
    return frame
