"""Trading halts seen on the data stream's ``statuses`` channel: the symbols that may get no order now.

Alpaca's status code (``sc``) depends on the symbol's tape (Real-time Stock Data, "Trading Status"):

- Tape A and B (CTA: NYSE, NYSE Arca, Cboe listed, so most ETFs: SSO, SDS, UVXY, SVXY, FAS, FAZ, TNA, TZA,
  ERX, ERY) announce a halt, LULD pauses included (reason ``M``), with ``2`` (trading halt) and its end
  with ``3`` (resume). Their other codes are information that changes no halt: ``5`` price indication,
  ``6`` trading range indication, ``7``/``8`` market imbalance buy/sell, ``9``/``A`` market-on-close
  imbalance buy/sell, ``C``/``D`` no market / market-on-close imbalance, ``E`` short sale restriction,
  ``F`` limit up-limit down.
- Tape C (UTP: Nasdaq listed, TQQQ and SQQQ) announces a halt with ``H`` (trading halt), a LULD pause with
  ``P`` (volatility trading pause), a quotation-only period with ``Q`` (quotes resume, trading does not
  yet) and the resumption with ``T`` (trading resumption).

The two sets share no code, so the code alone says what happened. A code Alpaca does not document is
logged and changes nothing. A status for a symbol outside the universe is ignored.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime

from openbell.trading.attempt_report import AttemptReport
from openbell.trading.recording import Recorder

log = logging.getLogger(__name__)

HALTED = frozenset({
    "2",  # Tape A/B: trading halt
    "H",  # Tape C: trading halt
    "P",  # Tape C: volatility trading pause
    "Q",  # Tape C: quotation resumption (quoting only: not trading yet)
})
TRADING = frozenset({
    "3",  # Tape A/B: resume
    "T",  # Tape C: trading resumption
})
INFORMATION = frozenset({"5", "6", "7", "8", "9", "A", "C", "D", "E", "F"})  # Tape A/B: no halt state change


class HaltWatch:
    """Keeps ``halted`` (the universe's symbols not trading now) from the status messages."""

    def __init__(self, universe: Sequence[str], recorder: Recorder, report: AttemptReport) -> None:
        self._universe = frozenset(universe)
        self._recorder = recorder
        self._report = report
        self.halted: set[str] = set()

    def on_status(self, symbol: str, code: str, reason: str, at: datetime | None = None) -> None:
        """A status message: a halt or pause starts, trading resumes, or (any other code) nothing changes."""
        symbol = symbol.upper()
        if symbol not in self._universe:
            return
        if code in HALTED:
            change = "halted" if symbol not in self.halted else None
            self.halted.add(symbol)
        elif code in TRADING:
            change = "resumed" if symbol in self.halted else None
            self.halted.discard(symbol)
        elif code in INFORMATION:
            log.debug("%s status %s (reason %s): no change", symbol, code, reason or "-")
            return
        else:
            log.warning("%s: unknown trading status code %r (reason %s) ignored", symbol, code, reason or "-")
            return
        if change is None:
            return
        log.warning("%s %s (status %s, reason %s)", symbol, change, code, reason or "-")
        seen = {"symbol": symbol, "change": change, "code": code, "reason": reason,
                "market_time": at.isoformat() if at is not None else ""}
        self._report.halts.append(seen)
        self._recorder.event(f"symbol_{change}", seen)
