"""The minute book: each bar applied once and in order, and when a minute is decidable (pure logic)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from openbell.strategy import Bar
from openbell.trading.minutes import MinuteBook, bars_frame, frame_bars, warm_frame


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


def test_the_warmup_frame_is_the_frame_its_bars_make_in_time_order() -> None:
    """What the live loop keeps for a reload's warmup (one frame) equals the frame of the warmup's bars."""
    t0 = datetime(2025, 11, 20, 14, 30, tzinfo=UTC)
    stored = pd.DataFrame({  # as load_bars returns them: by symbol, then time; extra columns
        "timestamp": pd.to_datetime([t0, t0 + timedelta(minutes=1), t0, t0 + timedelta(minutes=1)], utc=True
                                    ).as_unit("us"),
        "symbol": ["A", "A", "B", "B"], "open": [1.0, 2.0, 3.0, 4.0], "high": [1.5, 2.5, 3.5, 4.5],
        "low": [0.5, 1.5, 2.5, 3.5], "close": [1.2, 2.2, 3.2, 4.2], "volume": [10.0, 20.0, 30.0, 40.0],
        "trade_count": pd.array([1, 2, 3, None], dtype="Int64"), "vwap": [1.1, 2.1, float("nan"), 4.1]})
    warm = warm_frame(stored)
    assert list(warm["symbol"]) == ["A", "B", "A", "B"]  # time order, symbols within a minute as stored
    pd.testing.assert_frame_equal(warm, bars_frame(frame_bars(warm)))
    assert [b.close for b in frame_bars(warm)] == [1.2, 3.2, 2.2, 4.2]
