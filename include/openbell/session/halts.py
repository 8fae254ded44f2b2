"""Trading halts seen on the data stream's ``statuses`` channel: the symbols that may get no order now.

Alpaca announces a halt (LULD volatility pauses included) with status ``H`` (halted) or ``P`` (paused),
a quotation-only period with ``Q``, and the resumption with ``T``. A status for a symbol outside the
universe is ignored.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime

from openbell.session.recording import Recorder
from openbell.session.report import SessionReport

log = logging.getLogger(__name__)

HALTED = frozenset({"H", "P", "Q"})  # halted, paused, quoting only: not trading yet
TRADING = "T"


class HaltWatch:
    """Keeps ``halted`` (the universe's symbols not trading now) from the status messages."""

    def __init__(self, universe: Sequence[str], recorder: Recorder, report: SessionReport) -> None:
        self._universe = frozenset(universe)
        self._recorder = recorder
        self._report = report
        self.halted: set[str] = set()

    def on_status(self, symbol: str, code: str, reason: str, at: datetime | None = None) -> None:
        """A status message: a halt or pause starts, or trading resumes."""
        symbol = symbol.upper()
        if symbol not in self._universe:
            return
        if code in HALTED:
            change = "halted" if symbol not in self.halted else None
            self.halted.add(symbol)
        elif code == TRADING:
            change = "resumed" if symbol in self.halted else None
            self.halted.discard(symbol)
        else:
            return
        if change is None:
            return
        log.warning("%s %s (status %s, reason %s)", symbol, change, code, reason or "-")
        seen = {"symbol": symbol, "change": change, "code": code, "reason": reason,
                "market_time": at.isoformat() if at is not None else ""}
        self._report.halts.append(seen)
        self._recorder.event(f"symbol_{change}", seen)
