"""Linux CPU scheduling hints: a short slice for threads that send orders, batch for background work.

On Linux 6.12+ (EEVDF) a thread may ask for a shorter time slice than the default (0.7 ms x
(1 + log2 CPUs)) without any privilege. A shorter slice gives it an earlier virtual deadline: when
it wakes with an order to send, it is picked before threads that ran long slices. A background
process (the simulator, which stands in for the broker's servers) is put on ``SCHED_BATCH``: it no
longer preempts anything when it wakes. Both are hints; where they do not apply they are skipped.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import platform
import struct
import sys
from pathlib import Path

log = logging.getLogger(__name__)

SHORT_SLICE_NS = 100_000  # the least the kernel accepts
_SYSCALLS = {"x86_64": (314, 315), "aarch64": (274, 275)}  # sched_setattr, sched_getattr
_ATTR = struct.Struct("IIQiIQQQII")  # struct sched_attr, version 1 (56 bytes)
_libc = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None


def _getattr(tid: int) -> list[int] | None:
    calls = _SYSCALLS.get(platform.machine())
    if calls is None or _libc is None:
        return None
    buf = ctypes.create_string_buffer(_ATTR.size)
    if _libc.syscall(calls[1], tid, buf, _ATTR.size, 0) != 0:
        return None
    return list(_ATTR.unpack(buf.raw))


def thread_slice(tid: int = 0) -> int | None:
    """The time slice (ns) of thread ``tid`` (0: the calling one); None where it cannot be read."""
    attr = _getattr(tid)
    return attr[5] if attr is not None and attr[5] else None


def short_slice(ns: int = SHORT_SLICE_NS) -> bool:
    """Ask for an ``ns`` time slice for the calling thread; whether the kernel took it."""
    attr = _getattr(0)
    if attr is None or attr[1] != os.SCHED_OTHER:
        return False
    attr[0], attr[5] = _ATTR.size, ns
    buf = ctypes.create_string_buffer(_ATTR.pack(*attr))
    assert _libc is not None
    if _libc.syscall(_SYSCALLS[platform.machine()][0], 0, buf, 0) != 0:
        log.debug("no short time slice: %s", os.strerror(ctypes.get_errno()))
        return False
    return thread_slice() == ns


def background() -> bool:
    """Put every thread of this process on ``SCHED_BATCH`` (threads started later inherit it from
    the one starting them); whether the kernel took it."""
    tasks = Path("/proc/self/task")
    try:
        for tid in [0, *(int(t) for t in os.listdir(tasks))] if tasks.is_dir() else [0]:
            with contextlib.suppress(ProcessLookupError):  # a thread that has just ended
                os.sched_setscheduler(tid, os.SCHED_BATCH, os.sched_param(0))
    except (AttributeError, OSError) as exc:
        log.debug("no batch scheduling: %s", exc)
        return False
    return True
