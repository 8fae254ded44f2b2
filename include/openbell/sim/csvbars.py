"""Minute bars from CSV files (``--csv-dir``): one ``SYMBOL.csv`` per symbol."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from openbell.calendar import ET
from openbell.sim.market import SessionBars

CSV_COLUMNS = ("timestamp", "open", "high", "low", "close", "volume")


def load_csv(path: Path) -> dict[date, SessionBars]:
    """Read one symbol's minute bars (``timestamp,open,high,low,close,volume[,trade_count,vwap]``).

    Naive timestamps are UTC (as in Alpaca's API); each timestamp is the bar's start. Missing
    ``trade_count``/``vwap`` are derived (volume/100, typical price). ValueError names the problem.
    """
    try:
        df = pd.read_csv(path)
    except Exception as exc:
        raise ValueError(f"{path}: cannot read CSV: {exc}") from exc
    missing = [c for c in CSV_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(missing)}")
    try:
        ts = pd.to_datetime(df["timestamp"], utc=True, format="mixed")
        num = {c: pd.to_numeric(df[c], errors="raise").astype(float) for c in CSV_COLUMNS[1:]}
    except Exception as exc:
        raise ValueError(f"{path}: {exc}") from exc
    o, h, lo, c, v = (num[k].to_numpy() for k in ("open", "high", "low", "close", "volume"))
    bad = ~np.isfinite(o + h + lo + c + v) | (np.minimum.reduce([o, h, lo, c]) <= 0) | (v < 0) | \
        (h < np.maximum(o, c)) | (lo > np.minimum(o, c))
    if bad.any():
        row = int(np.flatnonzero(bad)[0]) + 2
        raise ValueError(f"{path}: line {row}: prices must be positive with low <= open,close <= high")
    n = (pd.to_numeric(df["trade_count"], errors="coerce").to_numpy() if "trade_count" in df
         else np.full(len(df), np.nan))
    n = np.where(np.isfinite(n), n, np.maximum(1, v // 100)).astype(np.int64)
    vw = pd.to_numeric(df["vwap"], errors="coerce").to_numpy() if "vwap" in df else np.full(len(df), np.nan)
    vw = np.where(np.isfinite(vw), vw, np.round((o + h + lo + c) / 4, 4))
    t = ts.dt.as_unit("ns").astype("int64").to_numpy()
    order = np.argsort(t, kind="stable")
    t, o, h, lo, c, v, n, vw = (a[order] for a in (t, o, h, lo, c, v, n, vw))
    if len(t) > 1 and (np.diff(t) == 0).any():
        raise ValueError(f"{path}: duplicate timestamps")
    days = pd.to_datetime(t, utc=True).tz_convert(ET).date
    out: dict[date, SessionBars] = {}
    for d in sorted(set(days)):
        m = days == d
        out[d] = SessionBars(t[m], o[m], h[m], lo[m], c[m], v[m].astype(np.int64), n[m], vw[m])
    return out
