"""Giving freed memory back to the system once a long-running process has started.

Python hands the memory it frees to the C allocator, which keeps the pages for reuse: what a start-up needed
only once (the imports' temporary objects, the warmup's frames) stays resident for the whole session. glibc's
``malloc_trim(0)`` returns every free page of every arena to the system. Where the C library has no such
call (musl, macOS) nothing is done.
"""

from __future__ import annotations

import ctypes
import sys

_trim = getattr(ctypes.CDLL(None), "malloc_trim", None) if sys.platform == "linux" else None


def release_free_memory() -> bool:
    """Return the C allocator's free pages to the system; whether any were returned (False where the C
    library cannot)."""
    return bool(_trim(0)) if _trim is not None else False
