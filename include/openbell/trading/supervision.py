"""A process that stops itself when whoever runs it is gone.

Airflow runs a task in a process under a supervisor (the Task SDK's, which heartbeats to the api-server).
When the supervisor dies, the task process is reparented and nobody will ever stop it or record its end:
a trading loop would trade on alone while Airflow's next attempt waits for its session lock.
:class:`SupervisorWatch` notices that (the parent pid changed) or a stop signal (SIGTERM, which the
Task SDK only turns into ``on_kill``) and calls ``on_lost`` once, from its own thread; if the process
has not stopped the watch ``exit_after`` seconds later, it ends the process, which releases the session
lock with its connection and closes the order workers' pipes. :func:`supervised` runs a coroutine under
such a watch and cancels it on loss.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import select
import signal
import threading
from collections.abc import Callable, Coroutine, Sequence
from types import FrameType
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

EXIT_AFTER = 45.0  # seconds from the loss to a forced exit: well within one market minute
LOST_EXIT_CODE = 75
_STOP = b"\x00"

Handler = Callable[[int, FrameType | None], Any] | int | None


class SupervisorLost(RuntimeError):
    """The process's supervisor is gone, or it was told to stop: this attempt stopped trading."""


class SupervisorWatch:
    """Calls ``on_lost(reason)`` once, on the watch's thread, when the parent process is gone (checked
    every ``interval`` seconds) or one of ``signals`` arrives (handlers are installed only when started on
    the main thread and chain to the previous ones). Unless stopped within ``exit_after`` seconds of the
    loss, the process exits with :data:`LOST_EXIT_CODE` (None: never).

    ``parent`` is the pid to watch (default: the parent at construction). :meth:`poll` is a cheap check
    for a loop that wants to look itself.
    """

    def __init__(
        self,
        on_lost: Callable[[str], None],
        *,
        interval: float = 0.5,
        signals: Sequence[signal.Signals] = (signal.SIGTERM,),
        exit_after: float | None = EXIT_AFTER,
        parent: int | None = None,
    ) -> None:
        self.on_lost = on_lost
        self.interval = interval
        self.signals = tuple(signals)
        self.exit_after = exit_after
        self.parent = os.getppid() if parent is None else parent
        self.reason: str | None = None
        self._previous: dict[signal.Signals, Handler] = {}
        self._pipe: tuple[int, int] | None = None
        self._thread: threading.Thread | None = None

    def poll(self) -> bool:
        """True once the supervisor is known lost (or is gone right now): one system call."""
        return self.reason is not None or os.getppid() != self.parent

    def start(self) -> SupervisorWatch:
        r, w = os.pipe()
        os.set_blocking(w, False)
        self._pipe = (r, w)
        if threading.current_thread() is threading.main_thread():
            for sig in self.signals:
                self._previous[sig] = signal.signal(sig, self._on_signal)
        self._thread = threading.Thread(target=self._watch, name="openbell-supervisor-watch", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop watching (and cancel the forced exit); restores the signal handlers."""
        for sig, previous in self._previous.items():
            with contextlib.suppress(ValueError, TypeError):
                signal.signal(sig, previous)
        self._previous.clear()
        if self._pipe is None:
            return
        r, w = self._pipe
        with contextlib.suppress(OSError):
            os.write(w, _STOP)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(5.0)
        self._pipe = None
        for fd in (r, w):
            with contextlib.suppress(OSError):
                os.close(fd)

    def __enter__(self) -> SupervisorWatch:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self._pipe is not None:
            with contextlib.suppress(OSError):
                os.write(self._pipe[1], bytes([signum]))
        previous = self._previous.get(signal.Signals(signum))
        if callable(previous):
            previous(signum, frame)

    def _watch(self) -> None:
        assert self._pipe is not None
        r = self._pipe[0]
        reason = None
        while reason is None:
            ready, _, _ = select.select([r], [], [], self.interval)
            if ready:
                data = os.read(r, 64)
                if _STOP in data or not data:
                    return
                reason = f"received {signal.Signals(data[0]).name}"
            elif os.getppid() != self.parent:
                reason = f"the supervisor (pid {self.parent}) is gone"
        self.reason = reason
        log.error("%s: stopping", reason)
        try:
            self.on_lost(reason)
        except Exception:
            log.exception("stopping after the supervisor was lost failed")
        if self.exit_after is None:
            return
        while True:  # only a stop cancels the forced exit; more signals change nothing
            ready, _, _ = select.select([r], [], [], self.exit_after)
            if not ready:
                break
            data = os.read(r, 64)
            if _STOP in data or not data:
                return
        log.error("still running %.0fs after %s: exiting", self.exit_after, reason)
        logging.shutdown()
        os._exit(LOST_EXIT_CODE)


async def supervised(coro: Coroutine[Any, Any, T], **options: Any) -> T:
    """Await ``coro`` under a :class:`SupervisorWatch` (``options`` are its own): on a loss the coroutine
    is cancelled, so its ``finally`` blocks clean up, and SupervisorLost is raised in its place."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None

    def cancel(reason: str) -> None:
        with contextlib.suppress(RuntimeError):  # the loop already closed: nothing left to stop
            loop.call_soon_threadsafe(task.cancel, reason)

    watch = SupervisorWatch(cancel, **options).start()
    try:
        return await coro
    except asyncio.CancelledError:
        if watch.reason is None:
            raise
        raise SupervisorLost(f"stopped trading: {watch.reason}") from None
    finally:
        watch.stop()
