"""What every part of one trading attempt shares, passed as one value: :class:`LoopContext`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from openbell.calendar import Session
from openbell.clock import MarketClock
from openbell.trading.attempt_report import AttemptReport
from openbell.trading.recording import Recorder
from openbell.trading.threads import Threads


@dataclass(frozen=True)
class LoopContext:
    """The session traded, its universe, the market clock, the helper threads (and the event loop they hand
    back to), the queued Postgres writes, the attempt's report and the account traded (None: the default
    account; its client order ids carry it). Each part's constructor takes this and only what is particular to it."""

    session: Session
    universe: tuple[str, ...]
    clock: MarketClock
    threads: Threads
    recorder: Recorder
    report: AttemptReport
    account: str | None = None

    @property
    def d(self) -> date:
        """The session's date."""
        return self.session.date
