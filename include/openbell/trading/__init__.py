"""The live trading loop: one attempt at trading a session (``TradingAttempt``), run by the ``live_trading`` task.

The names below load their modules on first use, so a process that needs one part of this package (an order
worker runs :mod:`openbell.trading.sender` alone) does not import the live loop with it."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from openbell.trading.fence import SessionLock, SessionLocked, lock_key
    from openbell.trading.live import AttemptReport, SessionOver, TradingAttempt, run_trading_attempt
    from openbell.trading.writer import Writer

_HOMES = {
    "AttemptReport": "live",
    "SessionLock": "fence",
    "SessionLocked": "fence",
    "SessionOver": "live",
    "TradingAttempt": "live",
    "Writer": "writer",
    "lock_key": "fence",
    "run_trading_attempt": "live",
}

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


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)
