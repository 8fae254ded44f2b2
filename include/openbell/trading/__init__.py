"""The live trading loop: one attempt at trading a session (``TradingAttempt``), run by the ``live_trading`` task."""

from openbell.trading.fence import SessionLock, SessionLocked, lock_key
from openbell.trading.live import AttemptReport, SessionOver, TradingAttempt, run_trading_attempt
from openbell.trading.writer import Writer

__all__ = [
    "AttemptReport",
    "SessionLock",
    "SessionLocked",
    "SessionOver",
    "TradingAttempt",
    "Writer",
    "lock_key",
    "run_trading_attempt",
]
