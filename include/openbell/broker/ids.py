"""Deterministic client order ids: one id per (session, decision, symbol), so a retry can never double.

An order the broker refused as too large for the buying power may be sent once more, smaller, under the
id derived from the first (:func:`resized_order_id`); it parses to the same session, decision and symbol.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

PREFIX = "ob-"
RESIZED = "-r"  # suffix of the one resized order that replaces a refused one
_ID = re.compile(r"^ob-(\d{8})-(\d{6,})-([A-Z0-9.\-/]{1,20})(-r)?$")


@dataclass(frozen=True)
class OrderKey:
    """The parts a client order id is built from."""

    session_date: date
    decision_seq: int
    symbol: str


def client_order_id(session_date: date, decision_seq: int, symbol: str) -> str:
    """``ob-YYYYMMDD-SEQ-SYMBOL``, e.g. ``ob-20251120-000042-TQQQ`` (well under Alpaca's 128 chars)."""
    if decision_seq < 0:
        raise ValueError(f"decision_seq must be >= 0, not {decision_seq}")
    sym = symbol.strip().upper()
    if not sym or len(sym) > 20:
        raise ValueError(f"bad symbol {symbol!r}")
    return f"{PREFIX}{session_date:%Y%m%d}-{decision_seq:06d}-{sym}"


def resized_order_id(value: str) -> str:
    """The id of the order sent once, resized, in place of ``value`` (``ob-20251120-000042-TQQQ-r``);
    ValueError for an id openbell did not build or one that is already a resize."""
    if parse_client_order_id(value) is None or is_resized(value):
        raise ValueError(f"no resized id derives from {value!r}")
    return value + RESIZED


def is_resized(value: str) -> bool:
    """True for the id of a resized order (:func:`resized_order_id`)."""
    m = _ID.match(value or "")
    return m is not None and m.group(4) is not None


def parse_client_order_id(value: str) -> OrderKey | None:
    """The key of an openbell id, or None for any id openbell did not build."""
    m = _ID.match(value or "")
    if not m:
        return None
    d = m.group(1)
    try:
        day = date(int(d[:4]), int(d[4:6]), int(d[6:]))
    except ValueError:
        return None
    return OrderKey(day, int(m.group(2)), m.group(3))


def is_ours(value: str, session_date: date | None = None) -> bool:
    """True for an openbell id (of ``session_date`` when given)."""
    key = parse_client_order_id(value)
    return key is not None and (session_date is None or key.session_date == session_date)
