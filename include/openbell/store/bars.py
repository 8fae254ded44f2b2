"""Bars in Postgres: validated, deduplicated, idempotent bulk upsert and range loads."""

from __future__ import annotations

import io
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine

from openbell.store.models import ADJUSTMENTS

# A frame of 1-minute bars, everywhere in openbell: bar start (aware UTC), symbol, OHLCV, then the two
# columns a feed may lack. REQUIRED is what every bar must have (the first seven, in this order). A frame
# names its prices' adjustment in ``attrs["adjustment"]`` (one of ADJUSTMENTS; "raw" when absent).
BAR_COLUMNS = ("timestamp", "symbol", "open", "high", "low", "close", "volume", "trade_count", "vwap")
REQUIRED = BAR_COLUMNS[:7]
PRICES = ("open", "high", "low", "close")
# Rejection reasons, in the order they are checked (a row counts under its first failing check).
REASONS = (
    "missing_timestamp",
    "missing_symbol",
    "non_finite_price",
    "non_positive_price",
    "high_below_low",
    "open_close_outside_range",
    "bad_volume",
    "bad_trade_count",
    "bad_vwap",
)

_PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01T00:00:00Z in Unix microseconds
_INT4_MAX = 2**31 - 1
_COPY_DTYPE = np.dtype([
    ("nfields", ">i2"),
    ("l_sym", ">i4"), ("sym", ">i4"),
    ("l_ts", ">i4"), ("ts", ">i8"),
    ("l_open", ">i4"), ("open", ">f8"),
    ("l_high", ">i4"), ("high", ">f8"),
    ("l_low", ">i4"), ("low", ">f8"),
    ("l_close", ">i4"), ("close", ">f8"),
    ("l_volume", ">i4"), ("volume", ">f8"),
    ("l_trade_count", ">i4"), ("trade_count", ">i8"),
    ("l_vwap", ">i4"), ("vwap", ">f8"),
])  # fmt: skip


@dataclass(frozen=True)
class UpsertResult:
    """What happened to a frame of bars."""

    received: int
    rejected: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0
    written: int = 0
    deleted: int = 0

    @property
    def rejected_total(self) -> int:
        """Rows refused by validation, all reasons together."""
        return sum(self.rejected.values())

    @property
    def unchanged(self) -> int:
        """Valid, distinct rows that were already stored with the same values."""
        return self.received - self.rejected_total - self.duplicates - self.written

    def as_dict(self) -> dict[str, Any]:
        """Counts for a step summary."""
        return {**asdict(self), "rejected_total": self.rejected_total}


def _utc_microseconds(column: pd.Series) -> np.ndarray:
    """Bar start times as int64 Unix microseconds (NaT as int64 min); naive times are refused."""
    ts = column
    if not isinstance(ts.dtype, pd.DatetimeTZDtype):
        try:
            ts = pd.to_datetime(ts)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"bars: column 'timestamp' is not a timestamp column: {exc}") from None
    if not isinstance(ts.dtype, pd.DatetimeTZDtype):
        raise ValueError("bars: column 'timestamp' must be timezone-aware (UTC bar start), got naive times")
    return np.asarray(ts.dt.tz_convert("UTC").dt.as_unit("us").array.asi8, dtype=np.int64)


def _numbers(df: pd.DataFrame, name: str) -> np.ndarray:
    if name not in df.columns:
        return np.full(len(df), np.nan)
    return pd.to_numeric(df[name], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)


def _validate(df: pd.DataFrame) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """The valid rows of ``df`` as column arrays, and the count of rejected rows per reason."""
    n = len(df)
    us = _utc_microseconds(df["timestamp"])
    symbols = df["symbol"].astype("object").to_numpy()
    symbol_ok = np.array([isinstance(s, str) and s.strip() != "" for s in symbols], dtype=bool)
    o, h, lo, c = (_numbers(df, name) for name in PRICES)
    volume = _numbers(df, "volume")
    trades = _numbers(df, "trade_count")
    vwap = _numbers(df, "vwap")
    prices = np.column_stack([o, h, lo, c]) if n else np.empty((0, 4))
    with np.errstate(invalid="ignore"):
        checks = {
            "missing_timestamp": us == np.iinfo(np.int64).min,
            "missing_symbol": ~symbol_ok,
            "non_finite_price": ~np.isfinite(prices).all(axis=1),
            "non_positive_price": (prices <= 0).any(axis=1),
            "high_below_low": h < lo,
            "open_close_outside_range": (o < lo) | (o > h) | (c < lo) | (c > h),
            "bad_volume": ~np.isfinite(volume) | (volume < 0),
            "bad_trade_count": ~np.isnan(trades)
            & (~np.isfinite(trades) | (trades < 0) | (trades > _INT4_MAX) | (trades != np.round(trades))),
            "bad_vwap": ~np.isnan(vwap) & (~np.isfinite(vwap) | (vwap <= 0)),
        }
    bad = np.zeros(n, dtype=bool)
    rejected: dict[str, int] = {}
    for reason in REASONS:
        hit = checks[reason] & ~bad
        if hit.any():
            rejected[reason] = int(hit.sum())
        bad |= hit
    keep = ~bad
    valid = {
        "us": us[keep], "symbol": symbols[keep], "open": o[keep], "high": h[keep], "low": lo[keep],
        "close": c[keep], "volume": volume[keep], "trade_count": trades[keep], "vwap": vwap[keep],
    }  # fmt: skip
    return valid, rejected


def _dedupe_sorted(valid: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row order, symbol codes, symbol names): one row per (symbol, ts), the last one of the frame,
    in primary-key order (fewer index page splits)."""
    codes, uniques = pd.factorize(valid["symbol"], sort=True)
    n = len(codes)
    order = np.lexsort((np.arange(n), valid["us"], codes))
    key_c, key_t = codes[order], valid["us"][order]
    last = np.ones(n, dtype=bool)
    last[:-1] = (key_c[1:] != key_c[:-1]) | (key_t[1:] != key_t[:-1])
    return order[last], codes[order[last]].astype(np.int32), np.asarray(uniques)


def _copy_buffer(valid: dict[str, np.ndarray], rows: np.ndarray, codes: np.ndarray) -> io.BytesIO:
    """``COPY ... (FORMAT binary)`` data for the temp table, built with one numpy record array."""
    n = len(rows)
    rec = np.empty(n, dtype=_COPY_DTYPE)
    rec["nfields"] = 9
    for name in ("sym", "open", "high", "low", "close", "volume", "vwap"):
        rec[f"l_{name}"] = 4 if name == "sym" else 8
    rec["l_ts"] = 8
    rec["l_trade_count"] = 8
    rec["sym"] = codes
    rec["ts"] = valid["us"][rows] - _PG_EPOCH_US
    for name in ("open", "high", "low", "close", "volume", "vwap"):
        rec[name] = valid[name][rows]  # vwap NaN means "no vwap": NULLIF in SQL
    trades = valid["trade_count"][rows]
    rec["trade_count"] = np.where(np.isnan(trades), -1, np.nan_to_num(trades, nan=-1)).astype(np.int64)
    buf = io.BytesIO()
    buf.write(b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big"))
    buf.write(rec.tobytes())
    buf.write((-1).to_bytes(2, "big", signed=True))
    buf.seek(0)
    return buf


_UPSERT = """
INSERT INTO bars AS b (symbol, ts, open, high, low, close, volume, trade_count, vwap, source, ingested_at,
                       adjustment)
SELECT s.symbol, i.ts, i.open, i.high, i.low, i.close, i.volume,
       NULLIF(i.trade_count, -1)::integer, NULLIF(i.vwap, 'NaN'::float8), %(source)s, now(), %(adjustment)s
FROM _bars_in i
JOIN unnest(%(symbols)s::text[]) WITH ORDINALITY AS s(symbol, n) ON s.n = i.sym + 1
ON CONFLICT (symbol, ts) DO UPDATE SET
    open = EXCLUDED.open, high = EXCLUDED.high, low = EXCLUDED.low, close = EXCLUDED.close,
    volume = EXCLUDED.volume, trade_count = EXCLUDED.trade_count, vwap = EXCLUDED.vwap,
    source = EXCLUDED.source, ingested_at = EXCLUDED.ingested_at, adjustment = EXCLUDED.adjustment
WHERE (b.open, b.high, b.low, b.close, b.volume, b.trade_count, b.vwap, b.source, b.adjustment)
    IS DISTINCT FROM
    (EXCLUDED.open, EXCLUDED.high, EXCLUDED.low, EXCLUDED.close, EXCLUDED.volume, EXCLUDED.trade_count,
     EXCLUDED.vwap, EXCLUDED.source, EXCLUDED.adjustment)
"""

# The stored bars of the frame's symbols in [start, end) that the frame does not hold.
_REPLACE = """
DELETE FROM bars b
WHERE b.symbol = ANY(%(symbols)s::text[]) AND b.ts >= %(start)s AND b.ts < %(end)s
  AND NOT EXISTS (SELECT 1 FROM _bars_in i
                  WHERE i.ts = b.ts AND i.sym + 1 = array_position(%(symbols)s::text[], b.symbol))
"""


def upsert_bars(
    engine: Engine,
    df: pd.DataFrame,
    source: str,
    *,
    adjustment: str | None = None,
    replace: tuple[datetime, datetime] | None = None,
) -> UpsertResult:
    """Validate, deduplicate and upsert bars on (symbol, timestamp); a rerun changes nothing.

    Columns: timestamp (aware, bar start), symbol, open, high, low, close, volume, and optionally
    trade_count and vwap (missing or NaN: NULL). Rows with a missing key, NaN/inf or non-positive prices,
    high < low, open/close outside [low, high], a missing or negative volume, a bad trade_count or vwap are
    rejected and counted by reason. Among valid rows with the same (symbol, timestamp) the last one wins.
    A frame-level problem (missing column, naive timestamps, empty source) raises ValueError and writes
    nothing. ``written`` counts rows inserted or changed.

    ``adjustment`` (default: the frame's ``attrs["adjustment"]``, else "raw") is recorded with every row.
    ``replace`` = (start, end) makes the stored bars of the frame's symbols in [start, end) exactly the
    frame's valid rows: the others are deleted (``deleted``), in the same transaction; a symbol with no
    valid row in the frame is left alone.
    """
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"bars must be a pandas DataFrame, got {type(df).__name__}")
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise ValueError(f"bars: missing column(s) {', '.join(missing)}; expected {', '.join(BAR_COLUMNS)}")
    if not source:
        raise ValueError("bars: source is empty")
    adjustment = adjustment or str(df.attrs.get("adjustment", "raw"))
    if adjustment not in ADJUSTMENTS:
        raise ValueError(f"bars: adjustment must be one of {', '.join(ADJUSTMENTS)}, got {adjustment!r}")
    if replace is not None and any(t.tzinfo is None for t in replace):
        raise ValueError(f"bars: replace must be timezone-aware, got {replace!r}")
    received = len(df)
    if received == 0:
        return UpsertResult(received=0)
    valid, rejected = _validate(df.reset_index(drop=True))
    rows, codes, uniques = _dedupe_sorted(valid)
    duplicates = len(valid["us"]) - len(rows)
    if len(rows) == 0:
        return UpsertResult(received, rejected, duplicates, 0)
    buf = _copy_buffer(valid, rows, codes)
    with engine.begin() as conn:
        raw = conn.connection.dbapi_connection
        assert raw is not None
        with raw.cursor() as cur:
            cur.execute(
                "CREATE TEMP TABLE _bars_in (sym int4, ts timestamptz, open float8, high float8, low float8,"
                " close float8, volume float8, trade_count int8, vwap float8) ON COMMIT DROP"
            )
            cur.copy_expert("COPY _bars_in FROM STDIN WITH (FORMAT binary)", buf)
            names = [str(s) for s in uniques]
            cur.execute(_UPSERT, {"source": source, "symbols": names, "adjustment": adjustment})
            written = cur.rowcount
            deleted = 0
            if replace is not None:
                cur.execute(_REPLACE, {"symbols": names, "start": replace[0], "end": replace[1]})
                deleted = cur.rowcount
    return UpsertResult(received, rejected, duplicates, int(written), int(deleted))


def load_bars(engine: Engine, symbols: Iterable[str], start: datetime, end: datetime) -> pd.DataFrame:
    """Bars of ``symbols`` with ``start <= timestamp < end``, sorted by symbol then timestamp.

    Columns as :func:`upsert_bars` takes them: timestamp (UTC), symbol, open, high, low, close, volume,
    trade_count (nullable Int64), vwap (NaN when unknown).
    """
    if isinstance(symbols, str):
        symbols = [symbols]
    names = sorted({str(s) for s in symbols})
    for name, value in (("start", start), ("end", end)):
        if value.tzinfo is None:
            raise ValueError(f"load_bars: {name} must be timezone-aware, got {value!r}")
    query = (
        "SELECT ts, symbol, open, high, low, close, volume, trade_count, vwap FROM bars"
        " WHERE symbol = ANY(%(symbols)s) AND ts >= %(start)s AND ts < %(end)s ORDER BY symbol, ts"
    )
    rows: list[tuple[Any, ...]] = []
    if names:
        with engine.connect() as conn:
            raw = conn.connection.dbapi_connection
            assert raw is not None
            with raw.cursor() as cur:
                cur.execute(query, {"symbols": names, "start": start, "end": end})
                rows = cur.fetchall()
    frame = pd.DataFrame.from_records(rows, columns=list(BAR_COLUMNS))
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True).dt.as_unit("us")
    for name in ("open", "high", "low", "close", "volume", "vwap"):
        frame[name] = pd.to_numeric(frame[name], errors="coerce").astype("float64")
    frame["trade_count"] = pd.array(frame["trade_count"], dtype="Int64")
    return frame
