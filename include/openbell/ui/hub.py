"""One LISTEN connection per api-server worker, fanned out to the WebSocket clients of that worker.

Every client has a bounded queue and its own sender task, so nobody waits for anybody. When a queue is
full: a client whose current send has been stuck for ``stall`` seconds (it does not read) is dropped;
one that is reading but fell behind a burst gets its backlog replaced by a ``resync`` message (it
reconnects and takes a fresh snapshot). Heartbeats go out every ``heartbeat`` seconds; a client that
has not answered one for ``3 * heartbeat`` seconds is dropped as dead. A row too large for its
notification is read by its key; when that read fails, the row's session gets a ``resync`` instead.

The connection listens on the channels of every account watched (:meth:`Hub.watch`: ``openbell_rows`` and
``openbell_events``, or an account's ``openbell_rows_account_<name>`` and ``openbell_events_account_<name>``);
each client belongs to one account (its schema) and is sent that account's notifications only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine

from openbell.store.events import CHANNEL as EVENTS_CHANNEL
from openbell.store.scope import DEFAULT_SCHEMA, channel
from openbell.ui.snapshot import ROW_QUERIES, fetch_row, plain

log = logging.getLogger(__name__)

ROWS_CHANNEL = "openbell_rows"
TABLES = tuple(t for t in ROW_QUERIES if t != "events")
TYPES = frozenset((*TABLES, "events", "broker"))

Send = Callable[[str], Awaitable[None]]
Close = Callable[[int, str], Awaitable[None]]

RESYNC_BEHIND = json.dumps({"type": "resync", "reason": "fell behind; take a new snapshot"})
CLOSE_TOO_SLOW = 4408
CLOSE_DEAD = 4409


@dataclass(eq=False)
class Client:
    """One connected viewer: its session, its filter, its bounded queue, its account (schema)."""

    send: Send
    close: Close
    session: str
    max_queue: int = 1000
    types: frozenset[str] | None = None  # None: every type
    symbols: frozenset[str] | None = None  # None: every symbol
    last_seen: float = field(default_factory=time.monotonic)
    sending_since: float | None = None  # when the send in progress started
    dropped: str | None = None
    schema: str = DEFAULT_SCHEMA
    queue: asyncio.Queue[str] = field(init=False)
    task: asyncio.Task[None] | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.queue = asyncio.Queue(self.max_queue)

    def wants(self, message: dict[str, Any]) -> bool:
        """Whether ``message`` passes this client's session, type and symbol filter."""
        kind = message["type"]
        if kind in ("heartbeat", "error") or (kind == "resync" and message.get("session") is None):
            return True
        if message.get("session") != self.session:
            return False
        if kind == "resync":
            return True
        if self.types is not None and message.get("table", kind) not in self.types:
            return False
        symbol = message.get("symbol")
        return self.symbols is None or symbol is None or symbol in self.symbols

    def offer(self, text: str) -> bool:
        """Queue ``text``; False when the queue is full."""
        try:
            self.queue.put_nowait(text)
        except asyncio.QueueFull:
            return False
        return True

    def stuck(self, stall: float) -> bool:
        """Whether the send in progress has waited longer than ``stall`` seconds."""
        return self.sending_since is not None and time.monotonic() - self.sending_since > stall

    def skip_backlog(self) -> None:
        """Replace everything queued with one ``resync`` message."""
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(RESYNC_BEHIND)

    async def pump(self) -> None:
        """Send queued messages in order until cancelled."""
        while True:
            text = await self.queue.get()
            self.sending_since = time.monotonic()
            await self.send(text)
            self.sending_since = None


def row_message(note: dict[str, Any]) -> dict[str, Any]:
    """A row notification (``openbell_rows``) as a message for clients."""
    row = note.get("row") or {}
    return {"type": "row", "table": note["table"], "op": note.get("op", "insert"),
            "session": note.get("session_date"), "key": note.get("key"), "row": row,
            "symbol": row.get("symbol")}


def event_message(note: dict[str, Any]) -> dict[str, Any]:
    """A journal notification (``openbell_events``) as a message for clients."""
    payload = note.get("payload") or {}
    return {"type": "row", "table": "events", "op": "insert", "session": note.get("session_date"),
            "key": {"id": note.get("id")}, "row": {k: note.get(k) for k in ("id", "ts", "kind", "payload")},
            "symbol": payload.get("symbol") if isinstance(payload, dict) else None,
            "truncated": bool(note.get("truncated"))}


class Hub:
    """Listens on Postgres once and fans every notification out to the matching clients."""

    def __init__(self, dsn: str, engine: Engine | None, *, max_queue: int = 1000, heartbeat: float = 5.0,
                 stall: float = 1.0, ticker: Callable[[], Awaitable[dict[str, Any]]] | None = None) -> None:
        """``engine`` (if any) reads the default account's rows, whose channels are then listened on."""
        self.dsn = dsn
        self.engines: dict[str, Engine] = {}
        self._channels: dict[str, tuple[str, bool]] = {}  # channel -> (schema, whether it is the journal's)
        if engine is not None:
            self._add_schema(DEFAULT_SCHEMA, engine)
        self.max_queue = max_queue
        self.stall = stall
        self.heartbeat = heartbeat
        self.ticker = ticker  # extra heartbeat content (the market clock)
        self.clients: set[Client] = set()
        self.delivered = 0
        self.dropped = 0
        self.resynced = 0
        self._conn: Any = None
        self._tasks: list[asyncio.Task[None]] = []
        self._started = asyncio.Event()
        self._starting = False
        self._background: set[asyncio.Task[None]] = set()

    # -- lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect and listen (once; later calls wait for the first)."""
        if self._starting:
            await self._started.wait()
            return
        self._starting = True
        try:
            await self._listen()
        except BaseException:
            self._starting = False  # the next caller tries again
            raise
        self._tasks = [asyncio.create_task(self._beat()), asyncio.create_task(self._watch())]
        self._started.set()

    async def _listen(self) -> None:
        import asyncpg

        self._conn = await asyncpg.connect(self.dsn)
        for name in list(self._channels):
            await self._conn.add_listener(name, self._on_notify)

    def _add_schema(self, schema: str, engine: Engine) -> list[str]:
        self.engines[schema] = engine
        names = [channel(ROWS_CHANNEL, schema), channel(EVENTS_CHANNEL, schema)]
        self._channels.update({names[0]: (schema, False), names[1]: (schema, True)})
        return names

    async def watch(self, schema: str, engine: Engine) -> None:
        """Listen on ``schema``'s channels too (once), its large rows read through ``engine``."""
        if schema in self.engines:
            return
        names = self._add_schema(schema, engine)
        if self._conn is not None and not self._conn.is_closed():
            for name in names:
                await self._conn.add_listener(name, self._on_notify)

    async def stop(self) -> None:
        """Drop every client, stop listening."""
        for task in self._tasks:
            task.cancel()
        for client in list(self.clients):
            self.drop(client, 1001, "server stopping")
        await asyncio.sleep(0)
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close()

    async def _watch(self) -> None:
        """Reconnect the LISTEN connection when it is lost; clients then resynchronise."""
        while True:
            await asyncio.sleep(1.0)
            if self._conn is not None and not self._conn.is_closed():
                continue
            try:
                await self._listen()
            except Exception as exc:
                log.warning("openbell UI: LISTEN reconnect failed: %s", type(exc).__name__)
                continue
            self.broadcast({"type": "resync", "reason": "notification stream reconnected"})

    # -- clients -----------------------------------------------------------------------------------

    def add(self, send: Send, close: Close, session: str, *, start: bool = True,
            schema: str = DEFAULT_SCHEMA) -> Client:
        """Register a client of ``schema``'s account; its sender starts now or at :meth:`start_client`
        (messages queue meanwhile)."""
        client = Client(send, close, session, self.max_queue, schema=schema)
        self.clients.add(client)
        if start:
            self.start_client(client)
        return client

    def start_client(self, client: Client) -> None:
        """Start sending what is queued for ``client``."""
        if client.task is None:
            client.task = asyncio.create_task(self._run_client(client))

    async def _run_client(self, client: Client) -> None:
        try:
            await client.pump()
        except asyncio.CancelledError:
            raise
        except Exception:
            self.clients.discard(client)  # the socket is gone

    def drop(self, client: Client, code: int, reason: str) -> None:
        """Disconnect ``client`` now; its socket is closed in the background (idempotent)."""
        if client not in self.clients:
            return
        self.clients.discard(client)
        client.dropped = reason
        self.dropped += 1
        if client.task is not None:
            client.task.cancel()
        self._spawn(self._close(client, code, reason))

    @staticmethod
    async def _close(client: Client, code: int, reason: str) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.close(code, reason), timeout=1.0)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def remove(self, client: Client) -> None:
        """Forget a client that disconnected by itself."""
        self.clients.discard(client)
        if client.task is not None:
            client.task.cancel()

    # -- fan-out -----------------------------------------------------------------------------------

    def broadcast(self, message: dict[str, Any], schema: str | None = None) -> int:
        """Queue ``message`` for every client (of ``schema``'s account, when given) that wants it; drop
        clients whose queue is full."""
        text = json.dumps(message, separators=(",", ":"))
        sent = 0
        for client in list(self.clients):
            if (schema is not None and client.schema != schema) or not client.wants(message):
                continue
            if client.offer(text):
                sent += 1
            elif client.stuck(self.stall):
                self.drop(client, CLOSE_TOO_SLOW, "client too slow: buffer full")
            else:
                client.skip_backlog()
                self.resynced += 1
        self.delivered += sent
        return sent

    def _on_notify(self, _conn: Any, _pid: int, channel: str, payload: str) -> None:
        try:
            note = json.loads(payload)
        except ValueError:
            return
        schema, journal = self._channels.get(channel, (DEFAULT_SCHEMA, channel == EVENTS_CHANNEL))
        if journal:
            message = event_message(note)
            if message.get("truncated"):
                self._spawn(self._complete(message, schema))
                return
        else:
            message = row_message(note)
            if "row" not in note:
                self._spawn(self._complete(message, schema))
                return
        self.broadcast(message, schema)

    async def _complete(self, message: dict[str, Any], schema: str) -> None:
        """Fetch a row too large for its notification, then broadcast it; when that fails, the session's
        viewers are told to resync."""
        try:
            row = await asyncio.to_thread(fetch_row, self.engines[schema], message["table"], message["key"] or {})
        except Exception as exc:
            log.warning("openbell UI: cannot read %s row: %s", message["table"], type(exc).__name__)
            self.broadcast({"type": "resync", "session": message.get("session"),
                            "reason": f"missed a {message['table']} row; take a new snapshot"}, schema)
            return
        if row is not None:
            message["row"] = row
            message["symbol"] = row.get("symbol")
        self.broadcast(message, schema)

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat)
            now = time.monotonic()
            for client in list(self.clients):
                if now - client.last_seen > 3 * self.heartbeat:
                    self.drop(client, CLOSE_DEAD, "no answer to heartbeats")
            extra: dict[str, Any] = {}
            if self.ticker is not None:
                try:
                    extra = await asyncio.wait_for(self.ticker(), timeout=min(1.0, self.heartbeat / 2))
                except Exception:
                    extra = {}
            self.broadcast(plain({"type": "heartbeat", "wall_time": time.time(), **extra}))
