"""Alpaca's bar timeframes (``5Min``, ``1Hour``, ``1Day``, ...) and their parsing; a bad one is a 400."""

from __future__ import annotations

import re
from dataclasses import dataclass

from openbell.sim.errors import bad_request


@dataclass(frozen=True)
class TimeFrame:
    amount: int
    unit: str  # Min, Hour, Day, Week, Month

    def __str__(self) -> str:
        return f"{self.amount}{self.unit}"


_TF_RE = re.compile(r"^(\d+)(Min|T|Hour|H|Day|D|Week|W|Month|M)$")
_TF_UNITS = {"T": "Min", "H": "Hour", "D": "Day", "W": "Week", "M": "Month"}


def parse_timeframe(text: str) -> TimeFrame:
    """Alpaca's timeframe syntax: {1-59}Min, {1-23}Hour, 1Day, 1Week, {1,2,3,6,12}Month."""
    m = _TF_RE.match(text or "")
    if not m:
        raise bad_request(f"invalid timeframe: {text!r}")
    amount, unit = int(m.group(1)), _TF_UNITS.get(m.group(2), m.group(2))
    ok = {
        "Min": 1 <= amount <= 59,
        "Hour": 1 <= amount <= 23,
        "Day": amount == 1,
        "Week": amount == 1,
        "Month": amount in (1, 2, 3, 6, 12),
    }[unit]
    if not ok:
        raise bad_request(f"invalid timeframe: {text!r}")
    return TimeFrame(amount, unit)
