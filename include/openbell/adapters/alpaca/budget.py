"""A request budget shared by every process that uses one API key on this host.

Alpaca allows ``limit`` Trading API requests per minute per key (200 by default) and answers 429 past
it; the simulator plays the same limit per market minute. :class:`RequestBudget` keeps openbell under
it by design: each request first takes a slot in a sliding window whose state (the send times of the
last ``limit`` requests and a "blocked until" instant set after a 429) lives in one small file, locked
with ``flock`` for the few microseconds of each update. The trading task's main process and its order
workers (which rebuild the broker from its settings) open the same file, because its path is derived
from the key and the Trading API URL.

The file lives in a directory only this user may write (:func:`budget_dir`: ``$XDG_RUNTIME_DIR``, else
openbell's home, never a shared one such as ``/tmp``), created 0700. :func:`open_state` refuses a directory
that is a symbolic link, owned by another user or writable by group or others, and a file that is a
symbolic link (``O_NOFOLLOW``: never followed) or not this user's private regular file. A refused or
unusable file is logged and holds nothing back; requests then meet the broker's 429s, which are waited out.

Reads (sync, listings, lookups) stop at ``read_share`` of the limit; orders (submits and their
lookups on the order connection, cancels, closes) may use the rest, up to :data:`ORDER_SHARE`, so
background GETs never starve an order. A window is one market minute: 60 s live, ``60 / speed`` wall
seconds against the simulator (:class:`MarketMinute`). Retries back off in market time too
(:meth:`RequestBudget.pace`): a rehearsal's broker recovers ``speed`` times faster, as its market runs.

What every budget shares (ceilings, window, pace, waiting) is :class:`WindowBudget`; the budget of a key used
from several machines keeps the same state in the state database instead
(:class:`~openbell.adapters.alpaca.pg_budget.PgRequestBudget`).
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import logging
import math
import os
import stat
import time
from array import array
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Literal, Protocol

from openbell.clock import ClockUnavailable, SimClock
from openbell.paths import home_dir

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
    """:meth:`WindowBudget.pace` of an alpaca-py client's budget (see ``config._harden``), else 1."""
    budget = getattr(getattr(client, "_session", None), "budget", None)
    return budget.pace() if isinstance(budget, WindowBudget) else 1.0


def budget_dir() -> Path:
    """The directory of the budget files: ``$XDG_RUNTIME_DIR/openbell-ratelimit`` when ``XDG_RUNTIME_DIR`` names
    an existing absolute directory (per user, on a local tmpfs, shared by every openbell of this user), else
    ``ratelimit`` in openbell's home (:func:`openbell.paths.home_dir`)."""
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    if runtime and os.path.isabs(runtime) and os.path.isdir(runtime):
        return Path(runtime) / "openbell-ratelimit"
    return home_dir() / "ratelimit"


def key_digest(key_id: str, trading_url: str) -> str:
    """The name of one key's budget on one Trading API: a hash, never the key id itself."""
    return hashlib.sha256(f"{key_id}\0{trading_url}".encode()).hexdigest()[:24]


def state_path(key_id: str, trading_url: str) -> Path:
    """The budget file of one key on one Trading API (the same in every process of this user); the key id
    is hashed into its name."""
    return budget_dir() / key_digest(key_id, trading_url)


class UnsafeBudgetState(OSError):
    """The budget's directory or file could be written, or swapped, by someone else: refused, never used."""


class _Stat(Protocol):
    st_mode: int
    st_uid: int


def check_private(st: _Stat, path: Path, *, uid: int | None = None, kind: str = "directory") -> None:
    """Refuse ``path`` (``st`` its ``stat``) unless it is a ``kind`` (directory or regular file) owned by
    ``uid`` (this process's user by default) that neither its group nor others may write."""
    uid = os.getuid() if uid is None else uid
    if not (stat.S_ISDIR(st.st_mode) if kind == "directory" else stat.S_ISREG(st.st_mode)):
        raise UnsafeBudgetState(
            f"request budget {kind} {path} is not a {'directory' if kind == 'directory' else 'regular file'}: refused"
        )
    if st.st_uid != uid:
        raise UnsafeBudgetState(
            f"request budget {kind} {path} is owned by uid {st.st_uid}, not this user (uid {uid}): refused"
            f" (another user may have created it; remove it or set XDG_RUNTIME_DIR or OPENBELL_HOME elsewhere)"
        )
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise UnsafeBudgetState(
            f"request budget {kind} {path} is writable by group or others (mode {stat.S_IMODE(st.st_mode):o}):"
            f" refused; chmod {'700' if kind == 'directory' else '600'} {path}"
        )


def open_state(path: Path) -> IO[bytes]:
    """``path`` opened for reading and writing (created 0600 in a directory created 0700), after checking
    that only this user can write or swap it; :class:`UnsafeBudgetState` otherwise. Neither the directory
    nor the file is followed if it is a symbolic link, and the file is checked through the descriptor
    that was opened, so nothing can be swapped in between."""
    directory = path.parent
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        _refuse_a_link(exc, "directory", directory)
        raise
    try:
        check_private(os.fstat(dir_fd), directory)
        try:
            fd = os.open(path.name, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, 0o600,
                         dir_fd=dir_fd)
        except OSError as exc:
            _refuse_a_link(exc, "file", path)
            raise
    finally:
        os.close(dir_fd)
    try:
        check_private(os.fstat(fd), path, kind="file")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "r+b")
    except BaseException:
        os.close(fd)
        raise


def _refuse_a_link(exc: OSError, kind: str, path: Path) -> None:
    """Say an ``O_NOFOLLOW`` refusal plainly (ELOOP; ENOTDIR for a linked directory); other errors pass."""
    if exc.errno == errno.ELOOP or (exc.errno == errno.ENOTDIR and path.is_symlink()):
        raise UnsafeBudgetState(f"request budget {kind} {path} is a symbolic link: refused, not followed") from exc


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


class WindowBudget:
    """At most ``limit`` requests per window, shared with every process that opens the same state; what
    the budgets share (ceilings, window, pace, waiting) is here, where their state lives in subclasses
    (:meth:`try_acquire`, :meth:`block`)."""

    def __init__(
        self,
        limit: int,
        *,
        read_share: float = DEFAULT_READ_SHARE,
        window: Callable[[], float | None] = lambda: MINUTE_SECONDS,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if limit < 1:
            raise ValueError(f"limit must be >= 1, not {limit}")
        if not 0 < read_share <= ORDER_SHARE:
            raise ValueError(f"read_share must be in (0, {ORDER_SHARE}], not {read_share}")
        self.limit = limit
        self.read_share = read_share
        self._window = window
        self._sleep = sleep

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
        raise NotImplementedError

    def block(self, seconds: float) -> None:
        """Hold every request of every process back for ``seconds`` (at most :meth:`wait_cap`): the
        broker said 429 and when its window ends."""
        raise NotImplementedError


def room(now: float, blocked: float, stamps: list[float], ceiling: int, span: float) -> float:
    """0 when one more request fits a window of ``span`` seconds holding the send times ``stamps`` (oldest
    first) at ``now``, else the seconds until it does (the block, or until the oldest that counts leaves)."""
    if blocked > now:
        return max(blocked - now, 0.001)
    if len(stamps) >= ceiling:
        return max(stamps[len(stamps) - ceiling] + span - now, 0.001)
    return 0.0


class RequestBudget(WindowBudget):
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
        super().__init__(limit, read_share=read_share, window=window, sleep=sleep)
        self.path = path
        self._now = now
        self._broken = False

    def __repr__(self) -> str:
        return f"RequestBudget(limit={self.limit}, read_share={self.read_share}, path={str(self.path)!r})"

    def try_acquire(self, priority: Priority) -> float:
        span = self.span()
        if span is None:
            return 0.0
        ceiling = self.ceiling(priority)
        with self._state() as state:
            if state is None:
                return 0.0
            now = self._now()
            blocked, stamps = _read(state, now, span)
            if wait := room(now, blocked, stamps, ceiling, span):
                return wait
            stamps.append(now)
            _write(state, blocked, stamps[-self.limit :])
            return 0.0

    def block(self, seconds: float) -> None:
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
            return open_state(self.path)
        except UnsafeBudgetState as exc:
            self._broken = True
            log.error("request budget file unusable: %s; requests are not held back", exc)
            return None
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
