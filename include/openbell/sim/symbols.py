"""Ticker symbols as the simulator accepts them, and where the default universe's symbols list.

The listing exchange is named as Alpaca's assets name it (``exchange``: ``NASDAQ``, ``NYSE``, ``ARCA`` for
NYSE Arca, ``BATS`` for Cboe BZX, ``AMEX``); it decides the symbol's tape (NYSE: A, Nasdaq: C, the others:
B), so the codes of its trading-status messages (see :mod:`openbell.sim.halts`).
"""

from __future__ import annotations

import re

SYMBOL = re.compile(r"[A-Z0-9]+(?:[./][A-Z0-9]+)*")

# The ETFs of the default universe not listed on NYSE Arca (the others are: SPY, IWM, XLF, XLE, SSO, SDS,
# TNA, TZA, FAS, FAZ, ERX, ERY). UVXY and SVXY moved from NYSE Arca to Cboe BZX in 2021.
LISTINGS = {"QQQ": "NASDAQ", "TQQQ": "NASDAQ", "SQQQ": "NASDAQ", "UVXY": "BATS", "SVXY": "BATS"}


def parse_symbol(text: object) -> str:
    """An upper-cased ticker: 1-10 characters of A-Z, 0-9, '.' and '/', letters or digits at both ends
    and no two separators in a row (``BRK.B``, ``BRK/B``); ValueError otherwise."""
    sym = text.upper() if isinstance(text, str) and text.isascii() else ""
    if len(sym) > 10 or not SYMBOL.fullmatch(sym):
        raise ValueError(f"expected a symbol (1-10 of A-Z 0-9 . /), got {text!r}")
    return sym
