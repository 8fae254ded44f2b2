"""Bars upsert and load rates against a real Postgres (embedded and durable, or $OPENBELL_TEST_DATABASE_URL).

Run: ``.venv/bin/python bench/store_bench.py [ROWS]``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import text

from openbell.pg.databases import scratch_database
from openbell.pg.server import EmbeddedPostgres
from openbell.store import db
from openbell.store.bars import load_bars, upsert_bars

START = datetime(2025, 1, 2, 14, 30, tzinfo=UTC)


def synthetic_bars(rows: int, symbols: int = 100) -> pd.DataFrame:
    """``rows`` valid minute bars spread over ``symbols`` symbols."""
    rng = np.random.default_rng(1)
    per = -(-rows // symbols)
    sym = np.repeat([f"S{i:03d}" for i in range(symbols)], per)[:rows]
    minute = np.tile(np.arange(per), symbols)[:rows]
    close = 50 + rng.random(rows) * 100
    open_ = close * (1 + rng.normal(0, 0.001, rows))
    return pd.DataFrame({
        "timestamp": pd.Timestamp(START) + pd.to_timedelta(minute, unit="min"),
        "symbol": sym,
        "open": open_,
        "high": np.maximum(open_, close) * 1.001,
        "low": np.minimum(open_, close) * 0.999,
        "close": close,
        "volume": rng.integers(100, 100_000, rows).astype(float),
        "trade_count": rng.integers(1, 1000, rows),
        "vwap": (open_ + close) / 2,
    })  # fmt: skip


@contextlib.contextmanager
def _server() -> Iterator[str]:
    external = os.environ.get("OPENBELL_TEST_DATABASE_URL")
    if external:
        yield external
        return
    root = Path(tempfile.mkdtemp(prefix="openbell-bench-"))
    server = EmbeddedPostgres(root / "pg", durable=True)
    server.start()
    try:
        yield server.url()
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def _timed(fn, *args):  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t0


def run(rows: int = 200_000, repeat: int = 3) -> list[tuple[str, float, str]]:
    """Upsert ``rows`` bars (insert, unchanged rerun, full update) and load them back; median rows/s."""
    df = synthetic_bars(rows)
    changed = df.assign(volume=df["volume"] + 1)
    with _server() as server_url, scratch_database(server_url, prefix="bench") as url:
        db.upgrade(url)
        engine = db.make_engine(url)
        symbols = sorted(df["symbol"].unique())
        times: dict[str, list[float]] = {"insert": [], "rerun": [], "update": [], "load": []}
        try:
            for _ in range(repeat):
                with engine.begin() as conn:
                    conn.execute(text("TRUNCATE bars"))
                first, t = _timed(upsert_bars, engine, df, "bench")
                assert first.written == rows, first
                times["insert"].append(t)
                rerun, t = _timed(upsert_bars, engine, df, "bench")
                assert rerun.written == 0, rerun
                times["rerun"].append(t)
                update, t = _timed(upsert_bars, engine, changed, "bench")
                assert update.written == rows, update
                times["update"].append(t)
                loaded, t = _timed(load_bars, engine, symbols, START, START + timedelta(days=30))
                assert len(loaded) == rows
                times["load"].append(t)
        finally:
            engine.dispose()
    t_insert, t_rerun, t_update, t_load = (statistics.median(times[k]) for k in times)
    return [
        (
            "bars upsert, new rows",
            rows / t_insert,
            f"rows/s ({rows} rows, {t_insert:.2f} s, median of {repeat})",
        ),
        ("bars upsert, unchanged rerun", rows / t_rerun, f"rows/s ({t_rerun:.2f} s, 0 written)"),
        ("bars upsert, every row changed", rows / t_update, f"rows/s ({t_update:.2f} s)"),
        ("bars load", rows / t_load, f"rows/s ({t_load:.2f} s)"),
    ]


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    for name, value, unit in run(n):
        print(f"{name:<34} {value:>12,.0f} {unit}")
