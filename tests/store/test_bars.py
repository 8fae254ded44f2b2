"""Bars upsert: validation, deduplication, idempotency, round trip."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import Engine, text

from openbell.store.bars import load_bars, upsert_bars

T0 = datetime(2025, 3, 3, 14, 30, tzinfo=UTC)
ALL = (T0 - timedelta(days=1), T0 + timedelta(days=1))


def make_bars(symbols: list[str], minutes: int, start: datetime = T0) -> pd.DataFrame:
    rng = np.random.default_rng(7)
    frames = []
    for k, sym in enumerate(symbols):
        close = 100 + k + np.cumsum(rng.normal(0, 0.1, minutes))
        open_ = close + rng.normal(0, 0.05, minutes)
        frames.append(pd.DataFrame({
            "timestamp": pd.date_range(start, periods=minutes, freq="min", tz="UTC"),
            "symbol": sym,
            "open": open_,
            "high": np.maximum(open_, close) + 0.02,
            "low": np.minimum(open_, close) - 0.02,
            "close": close,
            "volume": rng.integers(100, 10_000, minutes).astype(float),
            "trade_count": rng.integers(1, 500, minutes),
            "vwap": (open_ + close) / 2,
        }))  # fmt: skip
    return pd.concat(frames, ignore_index=True)


def snapshot(engine: Engine) -> list[tuple[object, ...]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text("SELECT * FROM bars ORDER BY symbol, ts"))]


def test_upsert_twice_leaves_the_table_identical(engine: Engine) -> None:
    df = make_bars(["AAPL", "MSFT", "SPY"], 120)
    first = upsert_bars(engine, df, source="rest")
    assert (first.received, first.rejected, first.duplicates, first.written) == (360, {}, 0, 360)
    before = snapshot(engine)
    again = upsert_bars(engine, df, source="rest")
    assert (again.written, again.unchanged) == (0, 360)
    assert snapshot(engine) == before  # ingested_at included: nothing was rewritten

    corrected = df.iloc[[5]].copy()
    corrected["volume"] += 1
    assert upsert_bars(engine, corrected, source="rest").written == 1
    with engine.connect() as conn:
        stored = conn.execute(
            text("SELECT volume FROM bars WHERE symbol = :s AND ts = :t"),
            {"s": corrected["symbol"].iloc[0], "t": corrected["timestamp"].iloc[0]},
        )
        assert stored.scalar_one() == corrected["volume"].iloc[0]


def test_bad_rows_are_rejected_by_reason_and_good_rows_kept(engine: Engine) -> None:
    df = make_bars(["AAPL"], 12)
    df.loc[0, "close"] = np.nan
    df.loc[1, "open"] = np.inf
    df.loc[2, "low"] = -1.0
    df.loc[3, ["high", "low"]] = [10.0, 11.0]
    df.loc[4, "open"] = df.loc[4, "high"] + 1
    df.loc[5, "close"] = df.loc[5, "low"] - 1
    df.loc[6, "volume"] = -5.0
    df.loc[7, "symbol"] = ""
    df.loc[8, "timestamp"] = pd.NaT
    result = upsert_bars(engine, df, source="rest")
    assert result.rejected == {
        "missing_timestamp": 1,
        "missing_symbol": 1,
        "non_finite_price": 2,
        "non_positive_price": 1,
        "high_below_low": 1,
        "open_close_outside_range": 2,
        "bad_volume": 1,
    }
    assert (result.received, result.rejected_total, result.written) == (12, 9, 3)
    stored = load_bars(engine, ["AAPL"], *ALL)
    assert list(stored["timestamp"]) == list(df.loc[9:11, "timestamp"])


def test_duplicate_timestamps_keep_the_last_row(engine: Engine) -> None:
    df = make_bars(["AAPL"], 3)
    late = df.iloc[[1]].copy()
    late["close"] = late["low"]  # a revised bar arriving later in the same frame
    result = upsert_bars(engine, pd.concat([df, late], ignore_index=True), source="stream")
    assert (result.received, result.duplicates, result.written) == (4, 1, 3)
    stored = load_bars(engine, ["AAPL"], *ALL)
    assert stored["close"].tolist() == [df["close"][0], late["close"].iloc[0], df["close"][2]]


def test_load_bars_round_trip_and_range(engine: Engine) -> None:
    df = make_bars(["SPY", "AAPL"], 30)
    df.loc[df.index[:3], "vwap"] = np.nan
    df["trade_count"] = pd.array(df["trade_count"], dtype="Int64")
    df.loc[df.index[3], "trade_count"] = pd.NA
    ny = df.copy()
    ny["timestamp"] = ny["timestamp"].dt.tz_convert("America/New_York")  # any aware zone is accepted
    upsert_bars(engine, ny, source="rest")

    loaded = load_bars(engine, ["SPY", "AAPL", "NONE"], *ALL)
    expected = df.sort_values(["symbol", "timestamp"], ignore_index=True)
    expected["timestamp"] = expected["timestamp"].dt.as_unit("us")
    pd.testing.assert_frame_equal(loaded, expected, check_dtype=False)
    assert str(loaded["timestamp"].dt.tz) == "UTC"

    window = load_bars(engine, "SPY", T0 + timedelta(minutes=10), T0 + timedelta(minutes=20))
    assert window["timestamp"].min() == T0 + timedelta(minutes=10)
    assert len(window) == 10  # end is exclusive
    assert load_bars(engine, [], *ALL).empty


def test_frame_level_errors_write_nothing(engine: Engine) -> None:
    naive = make_bars(["AAPL"], 3)
    naive["timestamp"] = naive["timestamp"].dt.tz_localize(None)
    with pytest.raises(ValueError, match="timezone-aware"):
        upsert_bars(engine, naive, source="rest")
    with pytest.raises(ValueError, match="missing column"):
        upsert_bars(engine, make_bars(["AAPL"], 3).drop(columns=["close"]), source="rest")
    with pytest.raises(ValueError, match="timezone-aware"):
        load_bars(engine, ["AAPL"], datetime(2025, 1, 1), datetime(2025, 1, 2))
    assert snapshot(engine) == []
    assert upsert_bars(engine, make_bars(["AAPL"], 0), source="rest").received == 0
