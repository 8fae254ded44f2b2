"""Bars as aligned minute x symbol arrays, shared by warmup, the backtest and the optimizer.

Minutes are the sorted union of the bars' timestamps. A symbol without a bar in a minute carries its
last price forward (return 0 there). Sessions are New York calendar dates. Returns used by signals
exclude the overnight gap: a symbol's first bar of a session contributes log(close/open), later bars
log(close/previous close), so lookbacks run across session boundaries without the gap.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

NEW_YORK = ZoneInfo("America/New_York")
REQUIRED_COLUMNS = ("timestamp", "symbol", "open", "close")


def market_day_minute(ts: datetime) -> tuple[int, int]:
    """(YYYYMMDD, minute of day) of an aware timestamp in New York time."""
    if ts.tzinfo is None or ts.utcoffset() is None:
        raise ValueError(f"timestamp {ts!r} must be timezone-aware")
    local = ts.astimezone(NEW_YORK)
    return local.year * 10000 + local.month * 100 + local.day, local.hour * 60 + local.minute


@dataclass(frozen=True)
class MarketArrays:
    """Aligned arrays of T minutes x N symbols."""

    times: pd.DatetimeIndex  # UTC minute starts
    symbols: tuple[str, ...]
    day: np.ndarray  # (T,) YYYYMMDD in New York
    minute: np.ndarray  # (T,) minute of the New York day
    session: np.ndarray  # (T,) 0-based session number
    session_starts: np.ndarray  # (S+1,) row where each session starts, then T
    open: np.ndarray  # (T,N) raw, NaN where no bar
    close: np.ndarray  # (T,N) raw, NaN where no bar
    high: np.ndarray  # (T,N) raw, NaN where no bar
    low: np.ndarray  # (T,N) raw, NaN where no bar
    volume: np.ndarray  # (T,N) raw, NaN where no bar
    has: np.ndarray  # (T,N) bool: a bar in this minute
    ret: np.ndarray  # (T,N) gap-excluded log return, 0 where no bar
    fresh: np.ndarray  # (T,N) bool: the symbol has printed in this session
    pnl: np.ndarray  # (T,N) simple return of the carried price from the previous minute, same session

    @property
    def n_sessions(self) -> int:
        return len(self.session_starts) - 1

    def session_days(self) -> list[int]:
        return [int(self.day[i]) for i in self.session_starts[:-1]]


def prepare(bars: pd.DataFrame, symbols: tuple[str, ...] | list[str]) -> MarketArrays:
    """Validate a long bar frame and align it; bars of symbols outside ``symbols`` are ignored. Without
    ``high``/``low`` columns they are the close, without ``volume`` 0."""
    if not isinstance(bars, pd.DataFrame):
        raise ValueError(f"bars must be a pandas DataFrame, got {type(bars).__name__}")
    missing = [c for c in REQUIRED_COLUMNS if c not in bars.columns]
    if missing:
        raise ValueError(f"bars lack column(s) {missing}; need {list(REQUIRED_COLUMNS)}")
    symbols = tuple(symbols)
    if not symbols or len(set(symbols)) != len(symbols):
        raise ValueError(f"symbols must be non-empty and unique, got {symbols}")
    frame = bars.loc[bars["symbol"].isin(symbols), list(REQUIRED_COLUMNS)].assign(
        high=bars.get("high", bars["close"]), low=bars.get("low", bars["close"]), volume=bars.get("volume", 0.0))
    if frame.empty:
        raise ValueError("no bars for any symbol of the universe")
    ts = pd.to_datetime(frame["timestamp"])
    if ts.dt.tz is None:
        raise ValueError("bar timestamps must be timezone-aware (UTC)")
    ts = ts.dt.tz_convert("UTC")
    opens = frame["open"].to_numpy(dtype=float)
    closes = frame["close"].to_numpy(dtype=float)
    bad = ~(np.isfinite(opens) & np.isfinite(closes) & (opens > 0) & (closes > 0))
    if bad.any():
        first = frame.iloc[int(np.flatnonzero(bad)[0])]
        raise ValueError(
            f"{int(bad.sum())} bar(s) with a missing or non-positive price, first: "
            f"{first['symbol']} at {first['timestamp']} open={first['open']} close={first['close']}"
        )
    keys = pd.DataFrame({"t": ts.to_numpy(), "s": frame["symbol"].to_numpy()})
    dup = keys.duplicated()
    if dup.any():
        row = keys[dup].iloc[0]
        raise ValueError(
            f"{int(dup.sum())} duplicate bar(s) per (symbol, timestamp), first: {row.s} at {row.t}"
        )

    t_codes, uniq = pd.factorize(ts, sort=True)
    times = pd.DatetimeIndex(uniq)
    sym_index = {s: i for i, s in enumerate(symbols)}
    s_codes = frame["symbol"].map(sym_index).to_numpy()
    n_t, n_s = len(times), len(symbols)
    open_m, close_m, high_m, low_m, volume_m = (np.full((n_t, n_s), np.nan) for _ in range(5))
    open_m[t_codes, s_codes] = opens
    close_m[t_codes, s_codes] = closes
    high_m[t_codes, s_codes] = frame["high"].to_numpy(dtype=float)
    low_m[t_codes, s_codes] = frame["low"].to_numpy(dtype=float)
    volume_m[t_codes, s_codes] = frame["volume"].to_numpy(dtype=float)
    has = ~np.isnan(close_m)

    local = times.tz_convert(NEW_YORK)
    day = (local.year * 10000 + local.month * 100 + local.day).to_numpy(dtype=np.int64)
    minute = (local.hour * 60 + local.minute).to_numpy(dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, day[1:] != day[:-1]])
    session = np.cumsum(np.r_[True, day[1:] != day[:-1]]) - 1

    close_ff = pd.DataFrame(close_m).ffill().to_numpy()
    bar_day = pd.DataFrame(np.where(has, day[:, None], np.nan)).ffill().to_numpy()
    prev_close = np.vstack([np.full((1, n_s), np.nan), close_ff[:-1]])
    prev_day = np.vstack([np.full((1, n_s), np.nan), bar_day[:-1]])
    same = has & (prev_day == day[:, None])
    with np.errstate(invalid="ignore", divide="ignore"):
        ret = np.where(same, np.log(close_m / prev_close), np.where(has, np.log(close_m / open_m), 0.0))
        pnl = close_ff / prev_close - 1.0
    first_row = np.zeros(n_t, dtype=bool)
    first_row[starts] = True
    pnl = np.where(np.isfinite(pnl) & ~first_row[:, None], pnl, 0.0)
    fresh = bar_day == day[:, None]
    return MarketArrays(
        times=times, symbols=symbols, day=day, minute=minute, session=session,
        session_starts=np.r_[starts, n_t], open=open_m, close=close_m, high=high_m, low=low_m,
        volume=volume_m, has=has, ret=ret,
        fresh=fresh, pnl=pnl,
    )


def session_slices(data: MarketArrays, skip: int = 0) -> list[slice]:
    """Row slices of each session after the first ``skip``."""
    s = data.session_starts
    return [slice(int(s[i]), int(s[i + 1])) for i in range(skip, data.n_sessions)]
