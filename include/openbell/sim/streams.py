"""WebSocket endpoints: the market-data stream (msgpack, ``/v2/iex`` and ``/v2/sip``) and the trade
updates stream (JSON, ``/stream``), with Alpaca's handshakes, error frames and connection limit."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import msgpack
import orjson
from aiohttp import WSCloseCode, WSMsgType, web

from openbell.jsonutil import json_default
from openbell.sim.faults import Faults
from openbell.sim.feed import BarStore
from openbell.sim.market import NS_PER_MIN, SessionBars
from openbell.sim.playback import to_utc_ns

log = logging.getLogger(__name__)

CHANNELS = ("trades", "quotes", "bars", "updatedBars", "dailyBars", "statuses", "lulds", "corrections",
            "cancelErrors")
AUTH_TIMEOUT = 10.0


def bar_message(kind: str, symbol: str, bars: SessionBars, i: int) -> dict[str, Any]:
    """A stream bar (``T`` = b, u or d) with ``t`` as a msgpack Timestamp."""
    return {
        "T": kind,
        "S": symbol,
        "o": float(bars.o[i]),
        "h": float(bars.h[i]),
        "l": float(bars.l[i]),
        "c": float(bars.c[i]),
        "v": int(bars.v[i]),
        "t": msgpack.Timestamp.from_unix_nano(int(bars.t[i])),
        "n": int(bars.n[i]),
        "vw": float(bars.vw[i]),
    }


@dataclass(eq=False)
class DataConn:
    ws: web.WebSocketResponse
    feed: str
    binary: bool
    key: str | None = None
    subs: dict[str, set[str]] = field(default_factory=lambda: {c: set() for c in CHANNELS})

    async def send(self, msgs: list[dict[str, Any]]) -> None:
        if self.ws.closed:
            return
        if self.binary:
            await self.ws.send_bytes(msgpack.packb(msgs))
        else:
            await self.ws.send_str(json.dumps(msgs, default=json_default))

    def ack(self) -> dict[str, Any]:
        out: dict[str, Any] = {"T": "subscription"}
        for ch in CHANNELS:
            out[ch] = sorted(self.subs[ch])
        return out


class DataHub:
    """Market-data stream connections and the per-key connection limit."""

    def __init__(self, check_auth: Callable[[str, str], bool], bars: BarStore, faults: Faults,
                 max_per_key: int = 1) -> None:
        self.check_auth = check_auth
        self.bars = bars
        self.faults = faults
        self.max_per_key = max_per_key
        self.conns: set[DataConn] = set()
        self.refuse_until: dict[str, float] = {}
        self.bars_sent = 0

    def _per_key(self, key: str) -> int:
        return sum(1 for c in self.conns if c.key == key)

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        feed = request.path.rsplit("/", 1)[-1]
        ws = web.WebSocketResponse(max_msg_size=4 * 1024 * 1024)
        await ws.prepare(request)
        binary = "msgpack" in request.headers.get("Content-Type", "")
        conn = DataConn(ws, feed, binary)
        await conn.send([{"T": "success", "msg": "connected"}])
        deadline = time.monotonic() + AUTH_TIMEOUT
        try:
            while not ws.closed:
                timeout = None if conn.key else max(0.0, deadline - time.monotonic())
                try:
                    msg = await asyncio.wait_for(ws.receive(), timeout)
                except TimeoutError:
                    await conn.send([{"T": "error", "code": 404, "msg": "auth timeout"}])
                    break
                if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                    break
                try:
                    data = msgpack.unpackb(msg.data) if msg.type == WSMsgType.BINARY else json.loads(msg.data)
                except Exception:
                    data = None
                if not isinstance(data, dict):
                    await conn.send([{"T": "error", "code": 400, "msg": "invalid syntax"}])
                    continue
                if not await self._on_message(conn, data):
                    break
        finally:
            self.conns.discard(conn)
            if not ws.closed:
                await ws.close()
        return ws

    async def _on_message(self, conn: DataConn, data: dict[str, Any]) -> bool:
        """Handle one client message; False closes the connection."""
        action = data.get("action")
        if action == "auth":
            if conn.key is not None:
                await conn.send([{"T": "error", "code": 403, "msg": "already authenticated"}])
                return True
            key, secret = data.get("key"), data.get("secret")
            if not (isinstance(key, str) and isinstance(secret, str) and self.check_auth(key, secret)):
                await conn.send([{"T": "error", "code": 402, "msg": "auth failed"}])
                return False
            if conn.feed == "sip" and not self.faults.sip_allowed:
                await conn.send([{"T": "error", "code": 409, "msg": "insufficient subscription"}])
                return False
            if time.monotonic() < self.refuse_until.get(key, 0.0):
                self.faults.counters["reconnects_refused"] += 1
                await conn.send([{"T": "error", "code": 406, "msg": "connection limit exceeded"}])
                return False
            if self._per_key(key) >= self.max_per_key:
                self.faults.counters["connection_limit_refusals"] += 1
                await conn.send([{"T": "error", "code": 406, "msg": "connection limit exceeded"}])
                return False
            conn.key = key
            self.conns.add(conn)
            await conn.send([{"T": "success", "msg": "authenticated"}])
            return True
        if action in ("subscribe", "unsubscribe"):
            if conn.key is None:
                await conn.send([{"T": "error", "code": 401, "msg": "not authenticated"}])
                return True
            changes: dict[str, set[str]] = {}
            for ch in CHANNELS:
                syms = data.get(ch)
                if syms is None:
                    continue
                if not isinstance(syms, list) or not all(isinstance(s, str) for s in syms):
                    await conn.send([{"T": "error", "code": 400, "msg": "invalid syntax"}])
                    return True
                changes[ch] = {s.upper() if s != "*" else s for s in syms}
            for ch, syms in changes.items():
                if action == "subscribe":
                    conn.subs[ch] |= syms
                else:
                    conn.subs[ch] -= syms
            await conn.send([conn.ack()])
            return True
        await conn.send([{"T": "error", "code": 400, "msg": "invalid syntax"}])
        return True

    def _wanted(self, conn: DataConn, channel: str, symbol: str) -> bool:
        subs = conn.subs[channel]
        return symbol in subs or "*" in subs

    async def _send_all(self, batches: list[tuple[DataConn, list[dict[str, Any]]]]) -> int:
        sends = [c.send(msgs) for c, msgs in batches if msgs]
        if sends:
            await asyncio.gather(*sends, return_exceptions=True)
        return sum(len(msgs) for _, msgs in batches)

    async def push_minute(self, bar_start: datetime, session_day: Any) -> None:
        """Send the bar that started at ``bar_start`` (and the running daily bar) to subscribers, each on its
        connection's feed."""
        if not self.conns:
            return
        all_syms = set(self.bars.symbols)
        now_ns = to_utc_ns(bar_start) + NS_PER_MIN
        batches = []
        minute: dict[tuple[str, str], dict[str, Any] | None] = {}
        daily: dict[tuple[str, str], dict[str, Any] | None] = {}
        for c in list(self.conns):
            msgs = []
            for ch, kind in (("bars", "b"), ("dailyBars", "d")):
                syms = all_syms if "*" in c.subs[ch] else c.subs[ch] & all_syms
                for sym in sorted(syms):
                    key = (sym, self.bars.feed_key(c.feed))
                    if key not in minute:
                        found = self.bars.bar_at(sym, bar_start, c.feed)
                        minute[key] = bar_message("b", sym, *found) if found else None
                    if minute[key] is None:
                        continue
                    if kind == "b":
                        msgs.append(minute[key])
                        continue
                    if key not in daily:
                        d = self.bars.daily_bar(sym, session_day, c.feed, now_ns, now_ns)
                        daily[key] = bar_message("d", sym, d, 0) if len(d) else None
                    if daily[key] is not None:
                        msgs.append(daily[key])
            batches.append((c, msgs))
        self.bars_sent += await self._send_all(batches)

    async def push_corrections(self, bar_start: datetime) -> int:
        """Send the corrected bars of the minute that started at ``bar_start`` on ``updatedBars``; how many."""
        batches = []
        for c in list(self.conns):
            subs = c.subs["updatedBars"]
            syms = set(self.bars.symbols) if "*" in subs else subs & set(self.bars.symbols)
            msgs = []
            for sym in sorted(syms):
                found = self.bars.correction_at(sym, bar_start, c.feed)
                if found:
                    msgs.append(bar_message("u", sym, *found))
            batches.append((c, msgs))
        return await self._send_all(batches)

    async def push_statuses(self, statuses: list[dict[str, Any]]) -> int:
        """Send trading-status messages to the ``statuses`` subscribers of their symbols; how many."""
        batches = [(c, [m for m in statuses if self._wanted(c, "statuses", m["S"])]) for c in list(self.conns)]
        return await self._send_all(batches)

    def drop_all(self, refuse_seconds: float) -> int:
        """Close every data connection (their keys are refused for ``refuse_seconds``); count them."""
        conns = list(self.conns)
        for c in conns:
            self.conns.discard(c)
            if c.key and refuse_seconds > 0:
                self.refuse_until[c.key] = time.monotonic() + refuse_seconds
            _close_later(c.ws)
        return len(conns)


_closing: set[asyncio.Task[bool]] = set()


def _close_later(ws: web.WebSocketResponse) -> None:
    """Close a socket without waiting for the peer's close frame here."""
    task = asyncio.ensure_future(ws.close(code=WSCloseCode.GOING_AWAY, message=b"dropped by simulator"))
    _closing.add(task)
    task.add_done_callback(_closing.discard)


@dataclass(eq=False)
class TradeConn:
    ws: web.WebSocketResponse
    queue: asyncio.Queue[bytes | None] = field(default_factory=asyncio.Queue)
    key: str | None = None  # the account's key once authorized
    listening: bool = False


class TradeHub:
    """Trade-updates stream connections; an account's events go to the listening connections of its key."""

    def __init__(self, check_auth: Callable[[str, str], bool]) -> None:
        self.check_auth = check_auth
        self.conns: set[TradeConn] = set()
        self.events_sent = 0

    def publish(self, key: str, event: dict[str, Any]) -> None:
        """Send an event of the account of ``key`` to its listening connections."""
        data = orjson.dumps({"stream": "trade_updates", "data": event})
        for c in self.conns:
            if c.listening and c.key == key:
                c.queue.put_nowait(data)

    async def _writer(self, conn: TradeConn) -> None:
        while True:
            data = await conn.queue.get()
            if data is None or conn.ws.closed:
                return
            with contextlib.suppress(ConnectionError, RuntimeError):
                await conn.ws.send_str(data.decode())
                self.events_sent += 1

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=1024 * 1024)
        await ws.prepare(request)
        conn = TradeConn(ws)
        writer = asyncio.create_task(self._writer(conn))
        self.conns.add(conn)
        try:
            async for msg in ws:
                if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                    break
                try:
                    data = json.loads(msg.data)
                except ValueError:
                    data = None
                if not isinstance(data, dict):
                    await ws.send_str(json.dumps({"stream": "error", "data": {"error": "invalid syntax"}}))
                    continue
                action, body = data.get("action"), data.get("data") or {}
                if action in ("authenticate", "auth"):
                    key, secret = body.get("key_id"), body.get("secret_key")
                    ok = isinstance(key, str) and isinstance(secret, str) and self.check_auth(key, secret)
                    conn.key = key if ok else None
                    status = "authorized" if ok else "unauthorized"
                    await ws.send_str(json.dumps({"stream": "authorization",
                                                  "data": {"action": "authenticate", "status": status}}))
                    if not ok:
                        break
                elif action == "listen":
                    if conn.key is None:
                        await ws.send_str(json.dumps({"stream": "listening",
                                                      "data": {"error": "unauthorized", "streams": []}}))
                        continue
                    streams = body.get("streams") if isinstance(body, dict) else None
                    streams = [s for s in streams or [] if s == "trade_updates"]
                    conn.listening = bool(streams)
                    await ws.send_str(json.dumps({"stream": "listening", "data": {"streams": streams}}))
                else:
                    await ws.send_str(json.dumps({"stream": "error", "data": {"error": "invalid syntax"}}))
        finally:
            self.conns.discard(conn)
            conn.queue.put_nowait(None)
            await writer
            if not ws.closed:
                await ws.close()
        return ws

    def drop_all(self) -> int:
        conns = list(self.conns)
        for c in conns:
            self.conns.discard(c)
            c.queue.put_nowait(None)
            _close_later(c.ws)
        return len(conns)
