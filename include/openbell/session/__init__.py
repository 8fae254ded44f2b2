"""The live trading session run by the ``live_trading`` task: stream, strategy, orders, checkpoints."""

from openbell.session.fence import SessionLock, SessionLocked, lock_key
from openbell.session.live import LiveSession, SessionOver, SessionReport, run_live_session
from openbell.session.writer import Writer

__all__ = [
    "LiveSession",
    "SessionLock",
    "SessionLocked",
    "SessionOver",
    "SessionReport",
    "Writer",
    "lock_key",
    "run_live_session",
]
