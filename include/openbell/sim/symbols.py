"""Ticker symbols as the simulator accepts them."""

from __future__ import annotations

import re

SYMBOL = re.compile(r"[A-Z0-9]+(?:[./][A-Z0-9]+)*")


def parse_symbol(text: object) -> str:
    """An upper-cased ticker: 1-10 characters of A-Z, 0-9, '.' and '/', letters or digits at both ends
    and no two separators in a row (``BRK.B``, ``BRK/B``); ValueError otherwise."""
    sym = text.upper() if isinstance(text, str) and text.isascii() else ""
    if len(sym) > 10 or not SYMBOL.fullmatch(sym):
        raise ValueError(f"expected a symbol (1-10 of A-Z 0-9 . /), got {text!r}")
    return sym
