"""The Trading view's push path: Postgres commit -> NOTIFY -> one api-server worker -> 50 WebSockets.

Run: ``.venv/bin/python -m bench ui_bench``. The app runs in its own uvicorn process (one worker, as
the api-server runs it) over an embedded Postgres; 50 WebSocket clients in this process subscribe to
one session. Figures:

- delay from an event's commit (``record_event`` returned) to its arrival at each of the 50 clients,
  over events committed one by one at ~50/s (p50, p99, max);
- fan-out rate: a burst of events committed in batches, counted from the first commit to the last
  arrival at the last client (events/s, and WebSocket messages/s = events/s x clients).
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

CLIENTS = 50
PACED_EVENTS = 200
PACE_SECONDS = 0.02
BURST_EVENTS = 4000
BURST_BATCH = 100
SESSION = date(2025, 11, 20)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, int(q * len(ordered) + 0.999999) - 1))]


def serve(url: str, port: int) -> None:
    """The bench's api-server stand-in: the app alone on uvicorn, one worker."""
    import uvicorn

    from openbell.ui import create_app
    from openbell.ui.market import Market

    token = os.environ["OPENBELL_BENCH_TOKEN"]

    async def check(given: str) -> Any | None:
        return {"username": "bench"} if secrets.compare_digest(given, token) else None

    def no_broker() -> Any:
        raise RuntimeError("no broker in the bench")

    app = create_app(url, check=check, market=Market(no_broker), heartbeat=30.0)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", ws="websockets-sansio")


class Clients:
    """``CLIENTS`` WebSockets recording the arrival time of every bench event."""

    def __init__(self, ws_url: str, token: str) -> None:
        self.ws_url, self.token = ws_url, token
        self.arrivals: list[dict[int, float]] = [{} for _ in range(CLIENTS)]
        self.tasks: list[asyncio.Task[None]] = []

    async def open(self) -> None:
        import websockets

        ready: list[asyncio.Event] = [asyncio.Event() for _ in range(CLIENTS)]
        for i in range(CLIENTS):
            ws = await websockets.connect(self.ws_url, additional_headers={"Cookie": f"_token={self.token}"},
                                          max_queue=None)
            self.tasks.append(asyncio.create_task(self._read(i, ws, ready[i])))
        await asyncio.gather(*(r.wait() for r in ready))

    async def _read(self, i: int, ws: Any, ready: asyncio.Event) -> None:
        seen = self.arrivals[i]
        async for raw in ws:
            now = time.time()
            message = json.loads(raw)
            if message["type"] == "snapshot":
                await ws.send('{"type": "subscribe", "types": ["events"]}')
            elif message["type"] == "subscribed":
                ready.set()
            elif message["type"] == "row":
                seen[int(message["row"]["payload"]["n"])] = now
            elif message["type"] == "heartbeat":
                await ws.send('{"type": "pong"}')

    async def wait_for(self, n: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(n in seen for seen in self.arrivals):
                return True
            await asyncio.sleep(0.01)
        return False

    def close(self) -> None:
        for task in self.tasks:
            task.cancel()


async def _measure(url: str, ws_url: str, token: str) -> list[tuple[str, float, str]]:
    from sqlalchemy import text

    from openbell.store.db import make_engine
    from openbell.store.events import record_event

    engine = make_engine(url)
    clients = Clients(ws_url, token)
    await clients.open()
    committed: dict[int, float] = {}

    def paced() -> None:
        for n in range(PACED_EVENTS):
            record_event(engine, SESSION, "bench", {"n": n})
            committed[n] = time.time()
            time.sleep(PACE_SECONDS)

    await asyncio.to_thread(paced)
    await clients.wait_for(PACED_EVENTS - 1, 30)
    delays = [(seen[n] - committed[n]) * 1000 for seen in clients.arrivals for n in committed if n in seen]
    lost = PACED_EVENTS * CLIENTS - len(delays)

    first = PACED_EVENTS
    last = first + BURST_EVENTS - 1

    def burst() -> float:
        started = time.time()
        for lo in range(first, last + 1, BURST_BATCH):
            with engine.begin() as conn:
                for n in range(lo, min(lo + BURST_BATCH, last + 1)):
                    record_event(conn, SESSION, "bench", {"n": n})
        return started

    started = await asyncio.to_thread(burst)
    complete = await clients.wait_for(last, 120)
    ends = [max(t for n, t in seen.items() if n >= first) for seen in clients.arrivals if len(seen) > first]
    got = sum(sum(1 for n in seen if n >= first) for seen in clients.arrivals)
    elapsed = (max(ends) - started) if ends else float("nan")
    clients.close()
    with engine.connect() as conn:
        stored = conn.execute(text("SELECT count(*) FROM events WHERE kind = 'bench'")).scalar()
    engine.dispose()
    return [
        ("ui: commit->50 clients delay p50", _percentile(delays, 0.50), "ms"),
        ("ui: commit->50 clients delay p99", _percentile(delays, 0.99), "ms"),
        ("ui: commit->50 clients delay max", max(delays), "ms"),
        ("ui: paced deliveries lost", float(lost), "messages"),
        ("ui: fan-out, one worker", BURST_EVENTS / elapsed if complete else got / CLIENTS / elapsed, "events/s"),
        ("ui: fan-out, one worker (x50 clients)", got / elapsed, "messages/s"),
        ("ui: burst deliveries lost", float(BURST_EVENTS * CLIENTS - got), "messages"),
        ("ui: events stored", float(stored or 0), "events"),
    ]


def run() -> list[tuple[str, float, str]]:
    """Measure and print (name, value, unit) rows."""
    from openbell.pg.databases import scratch_database
    from openbell.pg.throwaway import ephemeral_server
    from openbell.runtime.airflow import free_port
    from openbell.store import db

    token = secrets.token_urlsafe(24)
    with (
        tempfile.TemporaryDirectory(prefix="ob-ui-bench-") as tmp,
        ephemeral_server(Path(tmp)) as server,
        scratch_database(server, prefix="bench_ui") as url,
    ):
        db.upgrade(url)
        port = free_port()
        env = {**os.environ, "OPENBELL_BENCH_TOKEN": token}
        proc = subprocess.Popen([sys.executable, "-m", "bench.ui_bench", "--serve", url, str(port)], env=env,
                                cwd=Path(__file__).resolve().parents[1])
        try:
            _wait_port(port, proc)
            rows = asyncio.run(_measure(url, f"ws://127.0.0.1:{port}/ws?date={SESSION}", token))
        finally:
            proc.terminate()
            proc.wait(timeout=20)
    for name, value, unit in rows:
        print(f"{name:<40} {value:>12.3f} {unit}")
    return rows


def _wait_port(port: int, proc: subprocess.Popen[bytes]) -> None:
    import socket

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the bench server exited with {proc.returncode}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError("the bench server did not start")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        serve(sys.argv[2], int(sys.argv[3]))
    else:
        run()
