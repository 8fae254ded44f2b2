"""Positions carried across a split: the broker's split position is recognized against the last book."""

from __future__ import annotations

import time
from datetime import date, datetime

import pytest
from sqlalchemy import Engine, text

from dates import SESSION as DAY
from openbell.adapters.alpaca.broker import AlpacaBroker
from openbell.broker import book
from openbell.broker.reconcile import reconcile
from openbell.broker.splits import PositionSplit, carried_splits, follow_splits
from openbell.ports import PositionReport
from openbell.sim.testing import SimProcess

EVE = date(2025, 11, 19)


def _book(engine: Engine, day: date, rows: dict[str, tuple[float, float]]) -> None:
    with engine.begin() as conn:
        for symbol, (qty, avg) in rows.items():
            book.set_position(conn, day, symbol, qty, avg, "strategy")


def test_a_split_is_told_from_trades_and_unchanged_positions(engine: Engine) -> None:
    _book(engine, date(2025, 11, 18), {"SQQQ": (50, 9.0)})  # an older book is not the last one
    _book(engine, EVE, {"TZA": (105, 8.0), "FAZ": (10, 20.0), "SQQQ": (40, 10.0), "TNA": (-30, 30.0),
                        "UVXY": (0, 0.0)})
    positions = [
        PositionReport("TZA", 10, 80.0),  # 1-for-10, the half share paid in cash
        PositionReport("FAZ", 20, 10.0),  # 2-for-1
        PositionReport("SQQQ", 40, 10.0),  # unchanged
        PositionReport("TNA", -3, 300.0),  # a short split too
        PositionReport("UVXY", 5, 10.0),  # nothing held the day before
        PositionReport("ERX", 12, 40.0),
    ]
    with engine.connect() as conn:
        found = carried_splits(conn, DAY, positions)
        assert carried_splits(conn, EVE, positions) == []  # no earlier book
    assert [(s.symbol, s.ratio, s.since, s.qty_before, s.qty_after) for s in found] == [
        ("TZA", 0.1, EVE, 105, 10), ("FAZ", 2.0, EVE, 10, 20), ("TNA", 0.1, EVE, -30, -3)]


def _wait_market(sim: SimProcess, until: datetime, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while datetime.fromisoformat(sim.clock()["market_time"]) < until:
        assert time.monotonic() < deadline, "the simulator's market time did not reach the split's open"
        time.sleep(0.05)


def test_a_position_held_across_a_split_is_followed_and_journalled_once(engine: Engine) -> None:
    args = ["--split", "TZA:0.1:2025-11-20", "--seed-position", "TZA:100"]
    with SimProcess(speed=60, start="09:29", extra_args=args) as sim:
        broker = AlpacaBroker(sim.config())
        before = {p.symbol: p for p in broker.positions()}["TZA"]
        assert before.avg_entry_price is not None
        _book(engine, EVE, {"TZA": (before.qty, before.avg_entry_price)})  # the eve's book held it
        _wait_market(sim, datetime.fromisoformat("2025-11-20T09:30:05-05:00"))
        reconcile(broker, engine, DAY)
        found = follow_splits(broker, engine, DAY)
        assert follow_splits(broker, engine, DAY) == found
    assert found == [PositionSplit("TZA", 0.1, EVE, 100, 10, before.avg_entry_price,
                                   pytest.approx(before.avg_entry_price * 10))]
    with engine.connect() as conn:
        assert book.book_positions(conn, DAY) == {"TZA": (10.0, "adopted")}
        assert book.book_positions(conn, EVE) == {"TZA": (100.0, "strategy")}  # history stays
        kinds = conn.execute(text("SELECT kind, payload ->> 'ratio' FROM events WHERE session_date = :d"
                                  " AND kind = 'position_split'"), {"d": DAY}).all()
    assert [tuple(k) for k in kinds] == [("position_split", "0.1")]
