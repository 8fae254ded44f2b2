"""Postgres writes off the hot path: a thread that batches queued writes and retries through outages."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError, OperationalError

from openbell.dberrors import DatabaseUnavailable

log = logging.getLogger(__name__)

Write = Callable[[Connection], object]


@dataclass
class WriterStats:
    written: int = 0
    batches: int = 0
    retries: int = 0
    dropped: int = 0
    max_backlog: int = 0


def _is_outage(exc: BaseException) -> bool:
    """Postgres is down or restarting (the engine reports lost connections as DatabaseUnavailable)."""
    if isinstance(exc, DatabaseUnavailable | OperationalError):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


class Writer:
    """Runs queued ``fn(conn)`` writes in order, in batched transactions, on its own thread.

    Writes must be idempotent (upserts, ON CONFLICT): after a connection failure the whole batch is
    retried with backoff until Postgres answers, so a short outage loses nothing. A write that fails
    for any other reason is retried alone once and then dropped with an error log (it cannot block
    the ones behind it).
    """

    def __init__(
        self, engine: Engine, *, batch: int = 500, max_backoff: float = 5.0, linger: float = 0.05
    ) -> None:
        self.engine = engine
        self.linger = linger  # gather a burst (a minute's bars) into one transaction, away from the hot path
        self.batch = batch
        self.max_backoff = max_backoff
        self.stats = WriterStats()
        self._q: queue.Queue[Write | None] = queue.Queue()
        self._idle = threading.Event()
        self._idle.set()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="openbell-writer", daemon=True)
        self._thread.start()

    def put(self, fn: Write) -> None:
        """Queue one write (never blocks, never touches Postgres)."""
        self._idle.clear()
        self._q.put(fn)
        self.stats.max_backlog = max(self.stats.max_backlog, self._q.qsize())

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until everything queued so far is written; False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._q.unfinished_tasks == 0:
                return True
            time.sleep(0.01)
        return self._q.unfinished_tasks == 0

    def close(self, timeout: float = 30.0) -> bool:
        """Write what is queued (up to ``timeout``) and stop the thread; False if writes were left."""
        done = self.flush(timeout)
        self._stopping = True
        self._q.put(None)
        self._thread.join(timeout=5.0)
        if not done:
            log.error("writer stopped with %d writes not stored", self._q.unfinished_tasks)
        return done

    @property
    def backlog(self) -> int:
        return self._q.unfinished_tasks

    def _take(self) -> list[Write] | None:
        first = self._q.get()
        if first is None:
            self._q.task_done()
            return None
        items = [first]
        if self.linger > 0 and not self._stopping:
            time.sleep(self.linger)
        while len(items) < self.batch:
            try:
                nxt = self._q.get_nowait()
            except queue.Empty:
                break
            if nxt is None:
                self._q.task_done()
                self._q.put(None)
                break
            items.append(nxt)
        return items

    def _run(self) -> None:
        while True:
            items = self._take()
            if items is None:
                return
            self._write(items)
            for _ in items:
                self._q.task_done()

    def _write(self, items: list[Write]) -> None:
        backoff = 0.05
        while True:
            try:
                with self.engine.begin() as conn:
                    for fn in items:
                        fn(conn)
                self.stats.written += len(items)
                self.stats.batches += 1
                return
            except Exception as exc:
                if _is_outage(exc):
                    if self._stopping and self._q.empty() and backoff >= self.max_backoff:
                        log.error("Postgres unreachable while stopping; %d writes lost", len(items))
                        self.stats.dropped += len(items)
                        return
                    self.stats.retries += 1
                    log.warning("Postgres write failed (%s); retrying in %.2fs", type(exc).__name__, backoff)
                    time.sleep(backoff)
                    backoff = min(self.max_backoff, backoff * 2)
                    continue
                if len(items) == 1:
                    log.error("write dropped: %s", exc)
                    self.stats.dropped += 1
                    return
                for fn in items:  # isolate the bad write
                    self._write([fn])
                return
