"""The session's phase as Postgres announces it, so an order can be held the moment liquidation starts.

Every write to ``trading_sessions`` is announced on ``openbell_rows`` (migration 0002). A thread
listens on its own connection and keeps :attr:`PhaseWatch.phase` current; the live loop reads that
attribute right before orders leave, without a query on its hot path. After a lost connection the
thread reconnects and reads the phase again, so a change made meanwhile is not missed.
"""

from __future__ import annotations

import json
import logging
import select
import threading
from collections.abc import Callable
from datetime import date
from typing import Any

from sqlalchemy import Engine

from openbell.store.sessions import get_phase

log = logging.getLogger(__name__)

CHANNEL = "openbell_rows"
WINDING_DOWN = frozenset({"liquidating", "closed"})


class PhaseWatch:
    """Follows one session's phase; ``on_change(phase)`` is called from the watch's thread."""

    def __init__(
        self, engine: Engine, session_date: date, on_change: Callable[[str | None], None] | None = None,
        *, poll_seconds: float = 0.5, retry_seconds: float = 1.0,
    ) -> None:
        self.engine = engine
        self.session_date = session_date
        self.on_change = on_change
        self.poll_seconds = poll_seconds
        self.retry_seconds = retry_seconds
        self.phase: str | None = None
        self.connected = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="openbell-phase", daemon=True)

    @property
    def winding_down(self) -> bool:
        """True once the session is liquidating or closed."""
        return self.phase in WINDING_DOWN

    def start(self) -> PhaseWatch:
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _set(self, phase: str | None) -> None:
        if phase == self.phase:
            return
        self.phase = phase
        if self.on_change is not None:
            self.on_change(phase)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._listen()
            except Exception as exc:  # Postgres restarting: reconnect and read the phase again
                self.connected.clear()
                log.warning("phase watch lost Postgres (%s: %s); reconnecting", type(exc).__name__, exc)
                self._stop.wait(self.retry_seconds)

    def _listen(self) -> None:
        raw = self.engine.raw_connection()
        conn: Any = raw.dbapi_connection
        raw.detach()  # a connection that LISTENs never goes back to the pool
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(f"LISTEN {CHANNEL}")
            self._set(get_phase(self.engine, self.session_date))  # after LISTEN: nothing falls between
            self.connected.set()
            day = self.session_date.isoformat()
            while not self._stop.is_set():
                if select.select([conn], [], [], self.poll_seconds) == ([], [], []):
                    continue
                conn.poll()
                while conn.notifies:
                    payload = conn.notifies.pop(0).payload
                    if '"trading_sessions"' not in payload:  # the cheap test first: most rows are others
                        continue
                    msg = json.loads(payload)
                    if msg.get("table") != "trading_sessions" or msg.get("session_date") != day:
                        continue
                    row = msg.get("row")
                    self._set(row["phase"] if row else get_phase(self.engine, self.session_date))
        finally:
            self.connected.clear()
            conn.close()
