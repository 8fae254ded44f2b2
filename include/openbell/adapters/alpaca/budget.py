"""A request budget shared by every process that uses one API key on this host.

Alpaca allows ``limit`` Trading API requests per minute per key (200 by default) and answers 429 past
it; the simulator plays the same limit per market minute. :class:`RequestBudget` keeps openbell under
it by design: each request first takes a slot in a sliding window whose state (the send times of the
last ``limit`` requests and a "blocked until" instant set after a 429) lives in one small file, locked
with ``flock`` for the few microseconds of each update. The trading task's main process and its order
workers (which rebuild the broker from its settings) open the same file, because its path is derived
from the key and the Trading API URL.

Reads (sync, listings, lookups) stop at ``read_share`` of the limit; orders (submits and their
lookups on the order connection, cancels, closes) may use the rest, up to :data:`ORDER_SHARE`, so
background GETs never starve an order. A window is one market minute: 60 s live, ``60 / speed`` wall
seconds against the simulator (:class:`MarketMinute`). Retries back off in market time too
(:meth:`RequestBudget.pace`): a rehearsal's broker recovers ``speed`` times faster, as its market runs.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import math
import os
import tempfile
import time
from array import array
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Literal

from openbell.clock import ClockUnavailable, SimClock

log = logging.getLogger(__name__)

Priority = Literal["order", "read"]
ORDER: Priority = "order"
READ: Priority = "read"

DEFAULT_LIMIT = 200
DEFAULT_READ_SHARE = 0.8
ORDER_SHARE = 0.95  # the last 5% are left for requests outside the budget (a connection test, a person)
MINUTE_SECONDS = 60.0
MAX_WAIT_SECONDS = 60.0
# Send times are stamped before the request leaves; a window is widened by this much so that
# latency jitter cannot fit more than the ceiling into one of the broker's windows.
PAD_SHARE = 0.02
PAD_SECONDS = 0.01
CLOCK_REFRESH_SECONDS = 60.0


def pace_of(client: object) -> float:
    """:meth:`RequestBudget.pace` of an alpaca-py client's budget (see ``config._harden``), else 1."""
    budget = getattr(getattr(client, "_session", None), "budget", None)
    return budget.pace() if isinstance(budget, RequestBudget) else 1.0


def state_path(key_id: str, trading_url: str) -> Path:
    """The budget file of one key on one Trading API (the same in every process of this user)."""
    digest = hashlib.sha256(f"{key_id}\0{trading_url}".encode()).hexdigest()[:24]
    return Path(tempfile.gettempdir()) / f"openbell-ratelimit-{os.getuid()}" / digest


class MarketMinute:
    """Wall seconds of one market minute: 60 live, ``60 / speed`` against the simulator's published
    clock; None while the simulator's clock cannot be read (the budget then lets requests through)."""

    def __init__(self, clock_url: str | None = None, timeout: float = 5.0) -> None:
        self._clock = SimClock(clock_url, refresh_seconds=CLOCK_REFRESH_SECONDS, timeout=timeout) if clock_url else None

    def __call__(self) -> float | None:
        if self._clock is None:
            return MINUTE_SECONDS
        try:
            self._clock.now()
        except ClockUnavailable:
            return None
        mapping = self._clock.mapping
        return MINUTE_SECONDS / mapping.speed if mapping is not None and mapping.speed > 0 else None


class RequestBudget:
    """At most ``limit`` requests per window across processes sharing ``path``; see the module."""

    def __init__(
        self,
        limit: int,
        path: Path,
        *,
        read_share: float = DEFAULT_READ_SHARE,
        window: Callable[[], float | None] = lambda: MINUTE_SECONDS,
        now: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if limit < 1:
            raise ValueError(f"limit must be >= 1, not {limit}")
        if not 0 < read_share <= ORDER_SHARE:
            raise ValueError(f"read_share must be in (0, {ORDER_SHARE}], not {read_share}")
        self.limit = limit
        self.path = path
        self.read_share = read_share
        self._window = window
        self._now = now
        self._sleep = sleep
        self._broken = False

    def __repr__(self) -> str:
        return f"RequestBudget(limit={self.limit}, read_share={self.read_share}, path={str(self.path)!r})"

    def pace(self) -> float:
        """Wall seconds per market second: 1 live, ``1 / speed`` against the simulator, 1 while unknown."""
        window = self._window()
        if window is None or not math.isfinite(window) or window <= 0:
            return 1.0
        return min(window / MINUTE_SECONDS, 1.0)

    def ceiling(self, priority: Priority) -> int:
        """How many requests of ``priority`` may be in one window."""
        share = ORDER_SHARE if priority == ORDER else self.read_share
        return max(1, math.floor(self.limit * share))

    def span(self) -> float | None:
        """The window in wall seconds, padded (None when unknown: nothing is held back)."""
        window = self._window()
        if window is None or not math.isfinite(window) or window <= 0:
            return None
        return window * (1 + PAD_SHARE) + PAD_SECONDS

    def wait_cap(self) -> float:
        """The longest a 429 can need waiting out: one window, and never more than a minute."""
        span = self.span()
        return MAX_WAIT_SECONDS if span is None else min(MAX_WAIT_SECONDS, span)

    def acquire(self, priority: Priority) -> float:
        """Take one slot, first waiting while the window is full or blocked; the seconds waited."""
        waited = 0.0
        while (wait := self.try_acquire(priority)) > 0:
            self._sleep(wait)
            waited += wait
        return waited

    def try_acquire(self, priority: Priority) -> float:
        """Take one slot now and answer 0, or answer how long to wait before trying again."""
        span = self.span()
        if span is None:
            return 0.0
        ceiling = self.ceiling(priority)
        with self._state() as state:
            if state is None:
                return 0.0
            now = self._now()
            blocked, stamps = _read(state, now, span)
            if blocked > now:
                return max(blocked - now, 0.001)
            if len(stamps) >= ceiling:
                return max(stamps[len(stamps) - ceiling] + span - now, 0.001)
            stamps.append(now)
            _write(state, blocked, stamps[-self.limit :])
            return 0.0

    def block(self, seconds: float) -> None:
        """Hold every request of every process back for ``seconds`` (at most :meth:`wait_cap`): the
        broker said 429 and when its window ends."""
        seconds = min(max(seconds, 0.0), self.wait_cap())
        with self._state() as state:
            if state is None:
                self._sleep(seconds)
                return
            now = self._now()
            blocked, stamps = _read(state, now, self.span() or MAX_WAIT_SECONDS)
            _write(state, max(blocked, now + seconds), stamps)

    @contextmanager
    def _state(self) -> Iterator[IO[bytes] | None]:
        """The budget file, opened and exclusively locked; None when it cannot be used."""
        state = None if self._broken else self._open()
        if state is None:
            yield None
            return
        with state:  # closing releases the lock
            fcntl.flock(state, fcntl.LOCK_EX)
            yield state

    def _open(self) -> IO[bytes] | None:
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            return open(self.path, "a+b")
        except OSError as exc:
            self._broken = True
            log.warning("request budget file %s unusable (%s): requests are not held back", self.path, exc)
            return None


def _read(state: IO[bytes], now: float, span: float) -> tuple[float, list[float]]:
    """(blocked until, send times within the window) from the file; anything unreadable is dropped."""
    state.seek(0)
    raw = state.read()
    values = array("d")
    if raw and len(raw) % values.itemsize == 0:
        values.frombytes(raw)
    if not values:
        return 0.0, []
    blocked = values[0] if values[0] <= now + MAX_WAIT_SECONDS else 0.0  # a clock jump ends a block
    return blocked, [t for t in values[1:] if now - span < t <= now + span]


def _write(state: IO[bytes], blocked: float, stamps: list[float]) -> None:
    state.seek(0)
    state.truncate()
    state.write(array("d", [blocked, *stamps]).tobytes())
    state.flush()
