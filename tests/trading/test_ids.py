"""Deterministic client order ids and the minute book (pure logic)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from openbell.broker import client_order_id, is_ours, parse_client_order_id
from openbell.session.minutes import MinuteBook
from openbell.strategy import Bar


def test_client_order_id_is_deterministic_and_parses_back() -> None:
    a = client_order_id(date(2025, 11, 20), 42, "tqqq")
    assert a == "ob-20251120-000042-TQQQ"
    assert a == client_order_id(date(2025, 11, 20), 42, "TQQQ")
    assert len(a) <= 128
    key = parse_client_order_id(a)
    assert key is not None
    assert (key.session_date, key.decision_seq, key.symbol) == (date(2025, 11, 20), 42, "TQQQ")
    assert client_order_id(date(2025, 11, 20), 43, "TQQQ") != a
    assert client_order_id(date(2025, 11, 21), 42, "TQQQ") != a


def test_foreign_ids_are_not_ours() -> None:
    assert parse_client_order_id("4f3c2b1a-manual") is None
    assert not is_ours("ob-2025112-000001-TQQQ")
    assert is_ours("ob-20251120-1234567-BRK.B", date(2025, 11, 20))
    assert not is_ours("ob-20251120-000001-TQQQ", date(2025, 11, 21))


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="decision_seq"):
        client_order_id(date(2025, 11, 20), -1, "TQQQ")
    with pytest.raises(ValueError, match="symbol"):
        client_order_id(date(2025, 11, 20), 1, " ")


def _bar(symbol: str, ts: datetime, close: float = 10.0) -> Bar:
    return Bar(symbol, ts, close, close, close, close, 100.0)


def test_minute_book_applies_each_bar_once_and_in_order() -> None:
    t0 = datetime(2025, 11, 20, 20, 0, tzinfo=UTC)
    t1 = t0 + timedelta(minutes=1)
    book = MinuteBook(["A", "B"], t0)
    assert book.add(_bar("A", t1))  # early bar for the next minute waits
    assert book.add(_bar("A", t0))
    assert not book.add(_bar("A", t0, 11.0))  # duplicate
    assert not book.complete(t0)
    assert book.add(_bar("B", t0))
    assert book.complete(t0) and book.missing(t0) == set()
    with pytest.raises(ValueError, match="in order"):
        book.take(t1)
    bars = book.take(t0)
    assert {s: b.close for s, b in bars.items()} == {"A": 10.0, "B": 10.0}
    assert not book.add(_bar("B", t0))  # late: minute already decided
    assert book.late == 1 and book.duplicates == 1
    assert book.missing(t1) == {"B"}


def test_a_minute_the_stream_has_moved_past_is_decidable_without_every_symbol() -> None:
    t0 = datetime(2025, 11, 20, 20, 0, tzinfo=UTC)
    t1, t2 = t0 + timedelta(minutes=1), t0 + timedelta(minutes=2)
    book = MinuteBook(["A", "B"], t0)
    assert book.add(_bar("A", t0))  # B had no trades in t0
    assert not book.decidable(t0) and book.ready_at(t0) is None
    assert book.add(_bar("A", t2))  # the stream is two minutes on: t0 and t1 are over
    assert book.decidable(t0) and book.decidable(t1) and not book.complete(t0)
    assert not book.decidable(t2)
    assert book.newest == t2
    assert book.take(t0) == {"A": _bar("A", t0)}
    assert book.take(t1) == {} and not book.has_bars(t2 + timedelta(minutes=1))
    assert book.add(_bar("B", t2))
    assert book.decidable(t2) and book.complete(t2)  # complete before the stream moved past it
