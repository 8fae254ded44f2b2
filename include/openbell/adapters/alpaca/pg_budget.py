"""A request budget shared by every machine that uses one API key: its state in the state database.

:class:`~openbell.adapters.alpaca.budget.RequestBudget` keeps one key under Alpaca's limit on one host; under
Airflow's CeleryExecutor the tasks of one key run on several machines, each of which would believe it has the
whole limit. :class:`PgRequestBudget` behaves the same (ceilings per priority, a market-minute window, blocks
after a 429, pace) but keeps the window in one row of ``public.request_budget`` (migration 0008) per key and
Trading API, named by :func:`~openbell.adapters.alpaca.budget.key_digest` (a hash: the key id is never stored).

Each take is one statement, sent in autocommit: an upsert whose update locks the key's row, reads the
database's clock (``clock_timestamp()``: one clock for every machine, never a machine's own) once the row is
locked, drops the send times that left the window, and adds this one when the priority's ceiling allows. The
row stays locked for that statement only. What the statement does is what
:meth:`RequestBudget.try_acquire <openbell.adapters.alpaca.budget.RequestBudget.try_acquire>` does to its file
(the SQL twin of ``budget._read`` and :func:`~openbell.adapters.alpaca.budget.room`); the wait after a refusal
is computed by ``room`` itself from the row the statement returns.

Each process opens one connection (``psycopg2``, autocommit, short connect and statement timeouts) on first
use. When the database cannot be reached, or the table is missing, that is logged once and nothing is held
back, as for an unusable budget file: requests then meet the broker's 429s, which are waited out. The
connection is tried again after :data:`RETRY_SECONDS`.

The composition root passes the state database's shared URL (never an account's scoped one: the table lives
in ``public``, which every statement here names) as :attr:`AlpacaConfig.budget_url
<openbell.adapters.alpaca.config.AlpacaConfig.budget_url>`; order workers receive it with the settings.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg2

from openbell.adapters.alpaca.budget import (
    DEFAULT_READ_SHARE,
    MAX_WAIT_SECONDS,
    MINUTE_SECONDS,
    Priority,
    WindowBudget,
    room,
)
from openbell.dberrors import redact

log = logging.getLogger(__name__)

TABLE = "public.request_budget"
RETRY_SECONDS = 30.0  # after a failure, the database is tried again no sooner than this
CONNECT_TIMEOUT_SECONDS = 2
STATEMENT_TIMEOUT_MS = 2000
_NOW = "SELECT extract(epoch FROM clock_timestamp())::float8 AS now"
# Connections of budgets a forked child inherited: kept referenced, never closed from the child (closing
# would end the parent's session).
_INHERITED: list[Any] = []

# One take. A new key's row starts with this request in it (every ceiling is at least 1). Otherwise the row is
# locked first (ON CONFLICT ... DO UPDATE), then the clock is read: ``kept`` is the send times within
# (now - span, now + span], ``blocked`` the block unless it ends implausibly late (a clock jump), as budget._read;
# the request is granted when not blocked and fewer than ``ceiling`` are kept; the last ``limit`` are stored.
TAKE = f"""
INSERT INTO {TABLE} AS b (budget_key, blocked_until, stamps, checked_at, granted)
SELECT %(key)s, 0, ARRAY[n.now], n.now, true FROM ({_NOW}) n
ON CONFLICT (budget_key) DO UPDATE SET (blocked_until, stamps, checked_at, granted) = (
    SELECT s.blocked,
           CASE WHEN s.ok THEN (s.kept || s.now)[greatest(cardinality(s.kept) + 2 - %(limit)s, 1):] ELSE s.kept END,
           s.now, s.ok
    FROM (SELECT k.*, k.blocked <= k.now AND cardinality(k.kept) < %(ceiling)s AS ok
          FROM (SELECT n.now,
                       CASE WHEN b.blocked_until <= n.now + %(max_wait)s THEN b.blocked_until ELSE 0 END AS blocked,
                       ARRAY(SELECT u.t FROM unnest(b.stamps) WITH ORDINALITY AS u(t, i)
                             WHERE u.t > n.now - %(span)s AND u.t <= n.now + %(span)s ORDER BY u.i)::float8[] AS kept
                FROM ({_NOW}) n) k) s)
RETURNING b.blocked_until, b.stamps, b.checked_at, b.granted
"""

# A 429's block: every machine waits until ``seconds`` from now (a later block already set stands).
BLOCK = f"""
INSERT INTO {TABLE} AS b (budget_key, blocked_until, stamps, checked_at, granted)
SELECT %(key)s, n.now + %(seconds)s, '{{}}', n.now, false FROM ({_NOW}) n
ON CONFLICT (budget_key) DO UPDATE SET (blocked_until, checked_at, granted) = (
    SELECT greatest(CASE WHEN b.blocked_until <= n.now + %(max_wait)s THEN b.blocked_until ELSE 0 END,
                    n.now + %(seconds)s), n.now, false
    FROM ({_NOW}) n)
"""


def connect_dsn(url: str) -> str:
    """``url`` (SQLAlchemy's form, any driver) as a libpq connection URI: the scheme ``postgresql``, the rest as
    it is. Without SQLAlchemy, so an order worker that takes from the budget never imports it."""
    _, sep, rest = url.partition("://")
    if not sep:
        raise ValueError(f"not a database URL: {redact(url)!r}")
    return f"postgresql://{rest}"


class PgRequestBudget(WindowBudget):
    """At most ``limit`` requests per window across every machine that uses ``key`` on the database at ``url``;
    see the module."""

    def __init__(
        self,
        limit: int,
        url: str,
        key: str,
        *,
        read_share: float = DEFAULT_READ_SHARE,
        window: Callable[[], float | None] = lambda: MINUTE_SECONDS,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(limit, read_share=read_share, window=window, sleep=sleep)
        self.key = key
        self._url = url
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._conn: Any = None
        self._pid = os.getpid()
        self._down_until: float | None = None  # while set, the database is not tried (and nothing held back)

    def __repr__(self) -> str:
        return (f"PgRequestBudget(limit={self.limit}, read_share={self.read_share}, url={redact(self._url)!r},"
                f" key={self.key!r})")

    def try_acquire(self, priority: Priority) -> float:
        span = self.span()
        if span is None:
            return 0.0
        ceiling = self.ceiling(priority)
        row = self._run(TAKE, {"key": self.key, "limit": self.limit, "ceiling": ceiling, "span": span,
                               "max_wait": MAX_WAIT_SECONDS})
        if row is None:
            return 0.0
        blocked, stamps, now, granted = row
        if granted:
            return 0.0
        return room(now, blocked, list(stamps), ceiling, span) or 0.001

    def block(self, seconds: float) -> None:
        seconds = min(max(seconds, 0.0), self.wait_cap())
        if self._run(BLOCK, {"key": self.key, "seconds": seconds, "max_wait": MAX_WAIT_SECONDS}) is None:
            self._sleep(seconds)

    def close(self) -> None:
        """Close this process's connection (a later request opens another)."""
        with self._lock:
            self._drop()

    def _run(self, statement: str, params: dict[str, Any]) -> tuple[Any, ...] | None:
        """``statement``'s returned row (an empty tuple when it returns none), or None when the database
        cannot be used now (logged when it stops being usable)."""
        with self._lock:
            if self._down_until is not None and self._monotonic() < self._down_until:
                return None
            try:
                conn = self._connection()
                with conn.cursor() as cur:
                    cur.execute(statement, params)
                    row = cur.fetchone() if cur.description is not None else ()
            except psycopg2.Error as exc:
                self._drop()
                if self._down_until is None:
                    reason = redact(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
                    log.warning("request budget database %s unusable (%s): requests are not held back",
                                redact(self._url), reason)
                self._down_until = self._monotonic() + RETRY_SECONDS
                return None
            if self._down_until is not None:
                log.info("request budget database %s usable again", redact(self._url))
                self._down_until = None
            return tuple(row) if row is not None else ()

    def _connection(self) -> Any:
        if self._pid != os.getpid():  # a forked child: the parent's connection is not its own
            if self._conn is not None:
                _INHERITED.append(self._conn)
            self._conn, self._pid = None, os.getpid()
        if self._conn is None or self._conn.closed:
            conn = psycopg2.connect(connect_dsn(self._url), connect_timeout=CONNECT_TIMEOUT_SECONDS,
                                    application_name="openbell request budget")
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(f"SET statement_timeout = {STATEMENT_TIMEOUT_MS}")
            self._conn = conn
        return self._conn

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and self._pid == os.getpid():
            with contextlib.suppress(psycopg2.Error):
                conn.close()
