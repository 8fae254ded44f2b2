"""Simulator benchmarks: historical-bar download throughput and live bar latency (loopback only).

    .venv/bin/python bench/sim_bench.py
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import numpy as np
from alpaca.data.requests import StockBarsRequest
from alpaca.data.timeframe import TimeFrame

from openbell.sim.market import LEVERAGED
from openbell.sim.playback import sessions_between
from openbell.sim.testing import SimProcess

DATE = "2025-11-20"
SYMBOLS = list(LEVERAGED)  # 12 symbols
STREAM_SPEED = 600.0


def _download(sim: SimProcess, raw: bool) -> tuple[int, float]:
    day = datetime.fromisoformat(DATE).date()
    first = sessions_between(day - timedelta(days=60), day - timedelta(days=1))[-30]
    client = sim.config().data_client(raw_data=raw)
    req = StockBarsRequest(symbol_or_symbols=SYMBOLS, timeframe=TimeFrame.Minute,
                           start=first.open, end=datetime.fromisoformat(DATE).replace(tzinfo=UTC))
    t0 = time.perf_counter()
    out = client.get_stock_bars(req)
    elapsed = time.perf_counter() - t0
    n = sum(len(v) for v in out.values()) if raw else sum(len(v) for v in out.data.values())
    return n, elapsed


async def _latency(sim: SimProcess, seconds: float) -> list[float]:
    clock = sim.clock()
    wall0 = datetime.fromisoformat(clock["wall_time"]).timestamp()
    market0 = datetime.fromisoformat(clock["market_time"])
    speed = float(clock["speed"])
    delays: list[float] = []
    seen: set[tuple[int, datetime]] = set()
    streams = []
    for k in range(3):
        stream = sim.config().data_stream(raw_data=True)

        async def on_bar(bar: dict, k: int = k) -> None:
            now = time.time()
            t = bar["t"].to_datetime()
            if (k, t) in seen:
                return
            seen.add((k, t))
            boundary = t + timedelta(minutes=1)
            delays.append(now - (wall0 + (boundary - market0).total_seconds() / speed))

        stream.subscribe_bars(on_bar, *SYMBOLS)
        streams.append(stream)
    tasks = [asyncio.create_task(s._run_forever()) for s in streams]
    await asyncio.sleep(seconds)
    for s in streams:
        await s.stop_ws()
    await asyncio.wait_for(asyncio.gather(*tasks), 15)
    return delays[3:]  # skip the first minute of connection set-up


def run() -> list[tuple[str, float, str]]:
    """Measure, print and return (name, value, unit) figures."""
    results: list[tuple[str, float, str]] = []
    with SimProcess(date=DATE, speed=STREAM_SPEED, start="09:30",
                    extra_args=["--max-stream-connections", "3"]) as sim:
        n, cold = _download(sim, raw=True)
        results.append(("sim_bars_download_raw_cold", n / cold, "bars/s"))
        n, warm = _download(sim, raw=True)
        results.append(("sim_bars_download_raw", n / warm, "bars/s"))
        n, model = _download(sim, raw=False)
        results.append(("sim_bars_download_models", n / model, "bars/s"))
        results.append(("sim_bars_download_count", float(n), "bars"))
        delays = asyncio.run(_latency(sim, seconds=15.0))
        ms = np.array(delays) * 1000
        results.append(("sim_stream_bar_latency_p50", float(np.percentile(ms, 50)), "ms"))
        results.append(("sim_stream_bar_latency_p99", float(np.percentile(ms, 99)), "ms"))
        results.append(("sim_stream_bar_latency_samples", float(len(ms)), "minutes x clients"))
    for name, value, unit in results:
        print(f"{name:<34} {value:>14,.1f} {unit}")
    return results


if __name__ == "__main__":
    run()
