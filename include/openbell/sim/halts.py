"""Trading halts: windows of the played session in which a symbol does not trade.

While halted a symbol has no trades, so no bars on any feed, stream or REST; orders for it are accepted
and held, and fill at the reopening (Alpaca routes them to the exchange, which queues them). Subscribers
of the ``statuses`` channel get a ``"T": "s"`` message when the halt starts and when trading resumes;
a halt to the close resumes at the next session's open.

The message carries the codes of the symbol's tape, which its listing exchange decides, as Alpaca's do:

- Tape A and B (NYSE; NYSE Arca, Cboe, NYSE American: most ETFs): ``sc`` ``2`` "Trading Halt", then ``3``
  "Resume"; reason ``M`` (LULD trading pause) or ``P`` (news pending);
- Tape C (Nasdaq: QQQ, TQQQ, SQQQ, AAPL, MSFT): ``sc`` ``P`` "Volatility Trading Pause" (reason ``LUDP``)
  or ``H`` "Trading Halt" (reason ``T1``, news pending), then ``T`` "Trading Resumption".

A halt of up to 15 minutes is a LULD volatility pause, a longer one a news halt. The resumption repeats
the halt's reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import msgpack
import numpy as np

from openbell.calendar import ET, Session
from openbell.sim.playback import market_instant, parse_hhmm, to_utc_ns
from openbell.sim.symbols import parse_symbol

# Short halts are LULD volatility pauses; longer ones are news halts.
PAUSE_MINUTES = 15
TAPES = {"NYSE": "A", "NASDAQ": "C"}  # everything else (ARCA, BATS, AMEX) is on tape B
# Per tape (CTA: A and B, UTP: C): (sc, sm) of a halt, of a pause and of the resumption, and the (rc, rm) of
# a pause and of a news halt, as Alpaca documents them.
CTA = {"halt": ("2", "Trading Halt"), "pause": ("2", "Trading Halt"), "resume": ("3", "Resume"),
       "pause_reason": ("M", "Limit Up-Limit Down (LULD) Trading Pause"), "news_reason": ("P", "News Pending")}
UTP = {"halt": ("H", "Trading Halt"), "pause": ("P", "Volatility Trading Pause"),
       "resume": ("T", "Trading Resumption"), "pause_reason": ("LUDP", "Volatility Trading Pause"),
       "news_reason": ("T1", "Halt News Pending")}


@dataclass(frozen=True)
class Halt:
    """``symbol`` halted from ``start`` to ``end`` (Eastern HH:MM; ``None`` = the close)."""

    symbol: str
    start: str
    end: str | None

    def __str__(self) -> str:
        return f"{self.symbol}:{self.start}-{self.end or 'close'}"


def _hhmm(text: str) -> str:
    h, m, s = parse_hhmm(text)
    if s or text.count(":") != 1:
        raise ValueError
    return f"{h:02d}:{m:02d}"


def parse_halt(text: str) -> Halt:
    """``SYM:HH:MM-HH:MM`` or ``SYM:HH:MM-close``; ValueError with a one-line reason otherwise."""
    sym, _, span = str(text).partition(":")
    start, _, end = span.partition("-")
    try:
        halt = Halt(parse_symbol(sym), _hhmm(start), None if end == "close" else _hhmm(end))
    except ValueError:
        raise ValueError(f"expected SYM:HH:MM-HH:MM or SYM:HH:MM-close, got {text!r}") from None
    if halt.end is not None and halt.end <= halt.start:
        raise ValueError(f"the halt {text!r} ends before it starts")
    return halt


@dataclass(frozen=True)
class Window:
    """A halt placed in its session: halted for ``start <= t < end``."""

    halt: Halt
    start: datetime
    end: datetime

    @property
    def pause(self) -> bool:
        """A LULD volatility pause (short), not a news halt."""
        return self.end - self.start <= timedelta(minutes=PAUSE_MINUTES)


class HaltBook:
    """The halts of one session, by symbol."""

    def __init__(self, halts: list[Halt], session: Session | None) -> None:
        self.windows: dict[str, list[Window]] = {}
        self.session = session
        if halts and session is None:
            raise ValueError("halts need a session to play")
        for h in halts if session is not None else ():
            start = market_instant(session.date, h.start)
            end = session.close if h.end is None else market_instant(session.date, h.end)
            if not session.open <= start < session.close or end > session.close:
                hours = f"{session.open.astimezone(ET):%H:%M}-{session.close.astimezone(ET):%H:%M}"
                raise ValueError(f"--halt {h}: outside the session {session.date} ({hours} ET)")
            mine = self.windows.setdefault(h.symbol, [])
            if any(w.start < end and start < w.end for w in mine):
                raise ValueError(f"--halt {h}: overlaps another halt of {h.symbol}")
            mine.append(Window(h, start, end))

    def halted(self, symbol: str, t: datetime) -> bool:
        """True while ``symbol`` is halted at ``t``."""
        return any(w.start <= t < w.end for w in self.windows.get(symbol, ()))

    def halted_minutes(self, symbol: str, t_ns: np.ndarray) -> np.ndarray:
        """Boolean mask of the minute bars (starts ``t_ns``) that fall inside a halt."""
        mask = np.zeros(len(t_ns), dtype=bool)
        for w in self.windows.get(symbol, ()):
            mask |= (t_ns >= to_utc_ns(w.start)) & (t_ns < to_utc_ns(w.end))
        return mask

    def changes(self, boundary: datetime, next_open: datetime | None) -> list[tuple[Window, bool]]:
        """(window, halted) for every halt starting (True) or ending (False) at ``boundary``; a halt to the
        close ends at ``next_open``."""
        out = []
        for wins in self.windows.values():
            for w in wins:
                if w.start == boundary:
                    out.append((w, True))
                end = next_open if self.session is not None and w.end == self.session.close else w.end
                if end == boundary:
                    out.append((w, False))
        return out


def status_message(window: Window, halted: bool, at: datetime, exchange: str) -> dict[str, Any]:
    """A ``statuses`` message (msgpack-ready: ``t`` is a Timestamp) with the codes of the tape of
    ``exchange``, the symbol's listing exchange."""
    tape = TAPES.get(exchange, "B")
    codes = UTP if tape == "C" else CTA
    status, text = codes["resume"] if not halted else codes["pause" if window.pause else "halt"]
    reason, why = codes["pause_reason" if window.pause else "news_reason"]
    return {
        "T": "s",
        "S": window.halt.symbol,
        "sc": status,
        "sm": text,
        "rc": reason,
        "rm": why,
        "t": msgpack.Timestamp.from_unix_nano(to_utc_ns(at)),
        "z": tape,
    }
