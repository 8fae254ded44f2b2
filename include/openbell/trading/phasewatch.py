"""The session's phase and risk state as Postgres announces them, so an order can be held the moment
liquidation starts or an operator halts trading.

Every write to ``trading_sessions`` is announced on ``openbell_rows`` (an account's on its own channel,
migration 0007). A thread
listens on its own connection and keeps :attr:`PhaseWatch.phase` and :attr:`PhaseWatch.risk` current (with
who set the risk state, :attr:`PhaseWatch.risk_cause`, and the extra loss budget resumes granted today,
:attr:`PhaseWatch.extra_loss`); the live loop reads them right before orders leave, without a query on its
hot path. After a lost connection the thread reconnects and reads the phase again, so a change made
meanwhile is not missed.
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

from openbell.store.scope import channel, schema_of
from openbell.store.sessions import get_phase, get_risk

log = logging.getLogger(__name__)

CHANNEL = "openbell_rows"
WINDING_DOWN = frozenset({"liquidating", "closed"})


class PhaseWatch:
    """Follows one session's phase and risk state; ``on_change(phase)`` and ``on_risk(state)`` are called
    from the watch's thread when they change (``on_risk`` also when the extra loss budget changes; the
    attributes are current when it is called)."""

    def __init__(
        self, engine: Engine, session_date: date, on_change: Callable[[str | None], None] | None = None,
        *, on_risk: Callable[[str], None] | None = None, poll_seconds: float = 0.5, retry_seconds: float = 1.0,
    ) -> None:
        self.engine = engine
        self.session_date = session_date
        self.on_change = on_change
        self.on_risk = on_risk
        self.risk = "ACTIVE"
        self.risk_cause: str | None = None  # "loss_stop", "operator", or None: never set
        self.extra_loss = 0.0  # dollars of extra loss budget granted by resumes today, cumulative
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

    def _set(self, phase: str | None, risk: str, cause: str | None = None, extra_loss: float = 0.0) -> None:
        self.risk_cause = cause
        if risk != self.risk or extra_loss != self.extra_loss:
            self.risk, self.extra_loss = risk, extra_loss
            if self.on_risk is not None:
                self.on_risk(risk)
        if phase == self.phase:
            return
        self.phase = phase
        if self.on_change is not None:
            self.on_change(phase)

    def _read(self) -> None:
        risk = get_risk(self.engine, self.session_date)
        self._set(get_phase(self.engine, self.session_date), risk.state, risk.cause, risk.extra_loss)

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
                cur.execute(f"LISTEN {channel(CHANNEL, schema_of(self.engine.url))}")
            self._read()  # after LISTEN: nothing falls between
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
                    if row:
                        self._set(row["phase"], row.get("risk_state") or "ACTIVE", row.get("risk_cause"),
                                  float(row.get("extra_loss") or 0))
                    else:
                        self._read()
        finally:
            self.connected.clear()
            conn.close()
