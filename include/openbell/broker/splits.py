"""Positions carried across a split: the broker adjusts them at the split's open (quantity times the ratio,
average entry price divided by it, a fractional share paid in cash); reconcile then writes the broker's
positions into the session's book, so the book follows by itself. This recognizes such a change against the
last earlier session's book and journals it (``position_split``) instead of leaving an unexplained
difference; earlier sessions' books are history and stay as they were.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import date

from sqlalchemy import Connection, Engine, text

from openbell.broker.journal import event
from openbell.ports import BrokerPort, PositionReport

MIN_PRICE_CHANGE = 0.05  # an average price moving less than this overnight is no split


@dataclass(frozen=True)
class PositionSplit:
    """A position of ``since``'s book that the broker now holds split by ``ratio`` new shares per old."""

    symbol: str
    ratio: float
    since: date
    qty_before: float
    qty_after: float
    avg_before: float
    avg_after: float


def _last_book(conn: Connection, session_date: date) -> tuple[date | None, dict[str, tuple[float, float | None]]]:
    rows = conn.execute(
        text(
            "SELECT session_date, symbol, qty, avg_entry_price FROM positions WHERE session_date ="
            " (SELECT max(session_date) FROM positions WHERE session_date < :d)"
        ),
        {"d": session_date},
    ).all()
    book = {r[1]: (float(r[2]), None if r[3] is None else float(r[3])) for r in rows}
    return (rows[0][0] if rows else None), book


def carried_splits(conn: Connection, session_date: date, positions: Sequence[PositionReport]) -> list[PositionSplit]:
    """Broker positions that are the last earlier session's book split: same side, the average price
    changed by a factor ``1/ratio`` and the quantity by ``ratio`` (to within the share paid in cash)."""
    since, book = _last_book(conn, session_date)
    found: list[PositionSplit] = []
    for p in positions:
        qty_before, avg_before = book.get(p.symbol, (0.0, None))
        if since is None or not qty_before or not avg_before or not p.avg_entry_price or p.qty * qty_before <= 0:
            continue
        ratio = avg_before / p.avg_entry_price
        expected = qty_before * ratio
        if abs(ratio - 1) < MIN_PRICE_CHANGE or abs(p.qty - expected) > max(1.0, 1e-6 * abs(expected)):
            continue
        found.append(PositionSplit(p.symbol, round(ratio, 6), since, qty_before, p.qty, avg_before,
                                   p.avg_entry_price))
    return found


def follow_splits(broker: BrokerPort, engine: Engine, session_date: date) -> list[PositionSplit]:
    """Journal each position the broker split since the last earlier session (once per symbol and session)."""
    positions = broker.positions()
    with engine.begin() as conn:
        splits = carried_splits(conn, session_date, positions)
        for s in splits:
            seen = conn.execute(
                text("SELECT 1 FROM events WHERE session_date = :d AND kind = 'position_split'"
                     " AND payload ->> 'symbol' = :s"),
                {"d": session_date, "s": s.symbol},
            ).first()
            if seen is None:
                event(conn, session_date, "position_split", asdict(s))
    return splits
