"""The synthetic market as a library: deterministic, consistent, shaped like a session."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from openbell.sim.csvbars import load_csv
from openbell.sim.market import INVERSE_PAIRS, LEVERAGED, UNIVERSE, bars_between, session_bars


def test_same_seed_same_bars_other_seed_other_bars() -> None:
    a = session_bars(["TQQQ", "SPY"], "2025-11-20", seed=1)
    b = session_bars(["SPY", "TQQQ"], date(2025, 11, 20), seed=1)
    c = session_bars(["TQQQ", "SPY"], "2025-11-20", seed=2)
    pd.testing.assert_frame_equal(a, b)
    assert not np.allclose(a["close"].to_numpy(), c["close"].to_numpy())


def test_a_symbol_does_not_depend_on_its_neighbours() -> None:
    alone = session_bars(["SQQQ"], "2025-11-19")
    together = session_bars(list(UNIVERSE), "2025-11-19")
    pd.testing.assert_frame_equal(alone, together[together.symbol == "SQQQ"].reset_index(drop=True))


def test_columns_and_consistent_ohlc() -> None:
    df = session_bars([*UNIVERSE, "ZZZZ"], "2025-11-20")
    assert list(df.columns) == ["timestamp", "symbol", "open", "high", "low", "close", "volume",
                                "trade_count", "vwap"]
    assert str(df["timestamp"].dt.tz) == "UTC"
    assert (df[["open", "high", "low", "close", "vwap"]] > 0).all().all()
    assert (df["high"] >= df[["open", "close"]].max(axis=1)).all()
    assert (df["low"] <= df[["open", "close"]].min(axis=1)).all()
    assert ((df["vwap"] >= df["low"]) & (df["vwap"] <= df["high"])).all()
    assert (df["volume"] > 0).all() and (df["trade_count"] > 0).all()
    per_symbol = df.groupby("symbol").size()
    assert (per_symbol == 390).all()
    spy = df[df.symbol == "SPY"]
    assert spy["timestamp"].iloc[0] == pd.Timestamp("2025-11-20 14:30", tz="UTC")
    assert spy["timestamp"].iloc[-1] == pd.Timestamp("2025-11-20 20:59", tz="UTC")


def test_early_close_and_holiday() -> None:
    assert len(session_bars(["SPY"], "2025-11-28")) == 210
    with pytest.raises(ValueError, match="not an NYSE session"):
        session_bars(["SPY"], "2025-11-27")


def test_volume_is_u_shaped() -> None:
    df = bars_between(["SPY", "QQQ"], "2025-11-03", "2025-11-21")
    minute = df["timestamp"].dt.tz_convert("America/New_York")
    mins = (minute.dt.hour * 60 + minute.dt.minute) - 570
    vol = df.groupby(mins)["volume"].mean()
    first, middle, last = vol.iloc[:15].mean(), vol.iloc[150:240].mean(), vol.iloc[-15:].mean()
    assert first > 1.5 * middle and last > 1.3 * middle


def test_inverse_pairs_move_against_each_other() -> None:
    df = bars_between(list(LEVERAGED), "2025-11-17", "2025-11-21")
    rets = df.pivot(index="timestamp", columns="symbol", values="close").pct_change().dropna()
    for bull, bear in INVERSE_PAIRS:
        assert rets[bull].corr(rets[bear]) < -0.7, (bull, bear)
    # leverage shows in the size of the moves
    spy = bars_between(["SPY"], "2025-11-17", "2025-11-21").set_index("timestamp")["close"].pct_change().std()
    assert 1.5 * spy < rets["SSO"].std() < 2.5 * spy


def test_prices_stay_plausible_over_years() -> None:
    for day in ("2010-06-01", "2020-03-16", "2030-06-03"):
        df = session_bars(list(UNIVERSE), day)
        ratio = df.groupby("symbol")["close"].last() / pd.Series({s: UNIVERSE[s].base_price for s in UNIVERSE})
        assert ratio.between(0.05, 20).all(), ratio


def test_csv_bad_input_is_named(tmp_path: Path) -> None:
    good = tmp_path / "GOOD.csv"
    good.write_text("timestamp,open,high,low,close,volume\n2025-11-20T14:30:00Z,10,11,9,10.5,100\n"
                    "2025-11-20T14:31:00Z,10.5,10.6,10.4,10.5,50\n")
    bars = load_csv(good)
    (day,) = bars
    assert day == date(2025, 11, 20) and len(bars[day]) == 2 and bars[day].n[0] == 1
    bad = tmp_path / "BAD.csv"
    bad.write_text("timestamp,open,high,low,close,volume\n2025-11-20T14:30:00Z,10,9,9,10.5,100\n")
    with pytest.raises(ValueError, match="line 2"):
        load_csv(bad)
    missing = tmp_path / "MISS.csv"
    missing.write_text("timestamp,open,close\n2025-11-20T14:30:00Z,10,10\n")
    with pytest.raises(ValueError, match="missing column"):
        load_csv(missing)
