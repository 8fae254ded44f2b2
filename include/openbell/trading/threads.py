"""Where the live session's work runs: its event loop (the hot path) and a helper pool (the chores)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any


class Threads:
    """The session's event loop and helper pool, attached when the session runs.

    Helper threads hand results back with ``loop.call_soon_threadsafe``; once ``closing`` is set no new
    chore goes to the pool (it is being shut down).
    """

    loop: asyncio.AbstractEventLoop
    pool: ThreadPoolExecutor

    def __init__(self) -> None:
        self.closing = False

    def submit(self, fn: Callable[..., object], *args: Any) -> bool:
        """Run ``fn(*args)`` on the helper pool unless the session is closing; True when submitted."""
        if self.closing:
            return False
        self.pool.submit(fn, *args)
        return True
