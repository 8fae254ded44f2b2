"""The fan-out: a client that never reads is dropped when its buffer fills; the others get everything."""

from __future__ import annotations

import asyncio

from openbell.ui.hub import CLOSE_TOO_SLOW, Hub


def test_a_client_that_never_reads_is_dropped_without_slowing_the_others() -> None:
    async def scenario() -> None:
        hub = Hub("postgresql://unused", engine=None, max_queue=20, stall=0.2)  # type: ignore[arg-type]
        received: list[str] = []
        closed: dict[str, int] = {}
        stuck = asyncio.Event()

        async def fast(text: str) -> None:
            received.append(text)

        async def never(text: str) -> None:
            await stuck.wait()  # a socket whose peer does not read

        async def close_fast(code: int, reason: str) -> None:
            closed["fast"] = code

        async def close_slow(code: int, reason: str) -> None:
            closed["slow"] = code

        async def burst(start: int) -> None:
            for i in range(start, start + 50):
                hub.broadcast({"type": "row", "table": "orders", "session": "2025-11-20", "row": {"i": i}})
                await asyncio.sleep(0)

        hub.add(fast, close_fast, "2025-11-20")
        slow = hub.add(never, close_slow, "2025-11-20")
        await burst(0)
        # Behind, but its send has not been stuck long: its backlog becomes one "resync".
        assert slow in hub.clients and hub.resynced >= 1
        await asyncio.sleep(0.3)
        await burst(50)  # now its send has been stuck past the limit: dropped
        await asyncio.sleep(0.05)
        assert slow.dropped and slow not in hub.clients
        assert closed == {"slow": CLOSE_TOO_SLOW}
        assert len(received) == 100  # the fast client lost nothing
        assert hub.dropped == 1

    asyncio.run(scenario())


def test_over_a_real_socket_the_reader_gets_everything_and_the_stuck_one_is_dropped(state_url) -> None:
    """A peer that stops reading after the handshake fills the socket, then its queue: it is dropped."""
    import base64
    import os
    import socket
    import time
    from datetime import date
    from urllib.parse import urlsplit

    from ui_helpers import GOOD_TOKEN, recv_until, stand_in_login, ws_connect

    from conftest import serving
    from openbell.store.db import make_engine
    from openbell.store.events import record_event
    from openbell.ui import create_app
    from openbell.ui.market import Market

    def no_broker() -> None:
        raise RuntimeError("no broker")

    # stalled 0.5 s: the stuck peer long past it; the reader, whose unread rows fit its socket, never near it
    app = create_app(state_url, check=stand_in_login, market=Market(no_broker), heartbeat=60, max_queue=100,
                     stall=0.5)
    events, blob = 1200, "x" * 6000  # ~7 MB in all, well past what the socket buffers hold
    with serving(app) as base:
        url = base.replace("http://", "ws://") + "/ws?date=2025-11-20"
        host = urlsplit(base)
        stuck = socket.socket()
        stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stuck.connect((host.hostname, host.port))
        key = base64.b64encode(os.urandom(16)).decode()
        stuck.sendall((f"GET /ws?date=2025-11-20 HTTP/1.1\r\nHost: {host.netloc}\r\nUpgrade: websocket\r\n"
                       f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                       f"Cookie: _token={GOOD_TOKEN}\r\n\r\n").encode())

        async def reader() -> int:
            got = 0
            async with ws_connect(url, max_size=None) as ws:
                await recv_until(ws, lambda m: m["type"] == "snapshot")
                engine = make_engine(state_url)
                for lo in range(0, events, 10):  # commits of 10, as a busy trading task makes them
                    with engine.begin() as conn:
                        for n in range(lo, lo + 10):
                            record_event(conn, date(2025, 11, 20), "bulk", {"n": n, "blob": blob})
                    while got < lo + 10:  # a reader that keeps up: nothing of its own left unread
                        message = await recv_until(ws, lambda m: m["type"] in ("row", "resync"), timeout=30)
                        got += message["type"] == "row" and message["row"]["kind"] == "bulk"
                engine.dispose()
                while got < events:
                    message = await recv_until(ws, lambda m: m["type"] in ("row", "resync"), timeout=30)
                    got += message["type"] == "row" and message["row"]["kind"] == "bulk"
            return got

        try:
            assert asyncio.run(reader()) == events
            hub = app.state.trading._runtime.hub
            deadline = time.monotonic() + 5
            while hub.dropped < 1 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert hub.dropped == 1 and not hub.clients
        finally:
            stuck.close()


def test_a_row_too_large_to_announce_that_cannot_be_read_asks_its_viewers_to_resync(state_url) -> None:
    """The notification leaves the row out, reading it fails: the session's viewers take a new snapshot."""
    import json
    import socket

    from sqlalchemy import create_engine, text

    from openbell.store.db import make_engine
    from openbell.ui.app import asyncpg_dsn

    with socket.socket() as probe:  # a port nothing listens on: every read of the row fails
        probe.bind(("127.0.0.1", 0))
        gone = create_engine(f"postgresql+psycopg2://openbell@127.0.0.1:{probe.getsockname()[1]}/openbell")
    writer = make_engine(state_url)

    def write_large_step() -> None:
        with writer.begin() as conn:
            conn.execute(text("INSERT INTO step_runs (session_date, step, run_id, status, summary)"
                              " VALUES ('2025-11-20', 'download', 'r1', 'success', CAST(:s AS jsonb))"),
                         {"s": json.dumps({"gaps": "x" * 10000})})

    async def scenario() -> tuple[list[dict], list[dict]]:
        hub = Hub(asyncpg_dsn(state_url), gone, heartbeat=60)
        await hub.start()
        viewer: list[dict] = []
        other: list[dict] = []
        got = asyncio.Event()

        async def to_viewer(message: str) -> None:
            viewer.append(json.loads(message))
            got.set()

        async def to_other(message: str) -> None:
            other.append(json.loads(message))

        async def close(code: int, reason: str) -> None:
            pass

        hub.add(to_viewer, close, "2025-11-20")
        hub.add(to_other, close, "2025-11-21")
        try:
            await asyncio.to_thread(write_large_step)
            await asyncio.wait_for(got.wait(), 10)
            await asyncio.sleep(0.2)
        finally:
            await hub.stop()
        return viewer, other

    try:
        viewer, other = asyncio.run(scenario())
    finally:
        writer.dispose()
        gone.dispose()
    assert [m["type"] for m in viewer] == ["resync"]
    assert other == []
