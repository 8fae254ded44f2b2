"""One trader per session: a Postgres advisory lock held on a dedicated connection for the whole run,
re-verified between minutes (:class:`Fencing`)."""

from __future__ import annotations

import contextlib
import logging
import time
from datetime import date
from types import TracebackType
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, text

from openbell.store.scope import DEFAULT_SCHEMA, schema_of
from openbell.store.scope import lock_key as scoped_lock_key

if TYPE_CHECKING:
    from openbell.trading.attempt_report import AttemptReport
    from openbell.trading.threads import Threads

log = logging.getLogger(__name__)


class SessionLocked(RuntimeError):
    """Another attempt is trading this session."""


def lock_key(session_date: date, schema: str = DEFAULT_SCHEMA) -> int:
    """A stable signed 64-bit advisory-lock key for a session of the account whose state is in ``schema``."""
    return scoped_lock_key(f"live-session:{session_date.isoformat()}", schema)


class SessionLock:
    """``with SessionLock(engine, d, wait=30):`` holds the session's advisory lock or raises SessionLocked.

    The lock lives as long as its connection: if this process dies, Postgres releases it.
    """

    def __init__(self, engine: Engine, session_date: date, *, wait: float = 30.0, poll: float = 0.5) -> None:
        self.engine = engine
        self.session_date = session_date
        self.wait = wait
        self.poll = poll
        self.key = lock_key(session_date, schema_of(engine.url))
        self._conn: Connection | None = None

    def acquire(self) -> None:
        conn = self.engine.connect()
        give_up = time.monotonic() + self.wait
        try:
            while True:
                got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": self.key}).scalar()
                conn.commit()
                if got:
                    self._conn = conn
                    return
                if time.monotonic() >= give_up:
                    raise SessionLocked(
                        f"session {self.session_date} is already being traded by another attempt "
                        f"(advisory lock {self.key} held); waited {self.wait:.0f}s, not trading beside it"
                    )
                log.info("session %s locked by another attempt; waiting", self.session_date)
                time.sleep(self.poll)
        except BaseException:
            conn.close()
            raise

    def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self.key})
            conn.commit()
        except Exception as exc:  # the connection is gone: Postgres released the lock with it
            log.warning("advisory unlock failed (%s)", type(exc).__name__)
        finally:
            conn.close()

    @property
    def held(self) -> bool:
        return self._conn is not None

    def verify(self) -> bool:
        """Check that the lock is still ours; after its connection was lost (Postgres restarted), take
        it again at once. Returns False while Postgres cannot be reached; raises SessionLocked when
        another attempt took the lock meanwhile: this one must stop trading.
        """
        conn = self._conn
        if conn is not None:
            try:
                conn.execute(text("SELECT 1"))
                conn.commit()
                return True
            except Exception as exc:
                log.warning("session lock connection lost (%s); taking the lock again", type(exc).__name__)
                self._conn = None
                with contextlib.suppress(Exception):
                    conn.close()
        try:
            conn = self.engine.connect()
        except Exception as exc:
            log.warning("cannot reach Postgres to verify the session lock (%s)", type(exc).__name__)
            return False
        try:
            got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": self.key}).scalar()
            conn.commit()
        except Exception as exc:
            conn.close()
            log.warning("cannot take the session lock again (%s)", type(exc).__name__)
            return False
        if not got:
            conn.close()
            raise SessionLocked(
                f"session {self.session_date}: the advisory lock was lost with Postgres and another attempt "
                "holds it now; this attempt stops trading"
            )
        self._conn = conn
        log.info("session lock for %s taken again", self.session_date)
        return True

    def __enter__(self) -> SessionLock:
        self.acquire()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


class Fencing:
    """The live loop's view of its lock: ``ok`` is False while Postgres cannot confirm the lock (trading
    pauses), ``out`` says why once another attempt took it (trading stops for good)."""

    def __init__(self, lock: SessionLock | None, threads: Threads, report: AttemptReport) -> None:
        self._lock = lock
        self._threads = threads
        self._report = report
        self.ok = True  # written by the helper thread that verifies, read on the loop
        self.out: str | None = None  # set on the loop

    def check(self) -> None:
        """On a helper thread: is the session's lock still ours? Pause trading while Postgres cannot say;
        stop for good when another attempt took the lock (it was lost with a Postgres restart)."""
        if self._lock is None:
            return
        try:
            ok = self._lock.verify()
        except SessionLocked as exc:
            self._threads.loop.call_soon_threadsafe(setattr, self, "out", str(exc))
            return
        if ok != self.ok:
            log.warning("session lock %s: trading %s", "verified" if ok else "unverifiable",
                        "resumes" if ok else "paused")
            self._report.fence_pauses += not ok
        self.ok = ok
