"""Deterministic client order ids: one id per (account, session, decision, symbol), so a retry can never double.

The default account's ids are ``ob-YYYYMMDD-SEQ-SYMBOL``; a named account's carry its name,
``ob-<account>-YYYYMMDD-SEQ-SYMBOL``, so two accounts' ids never collide and each account knows its own
(:func:`is_ours`). An account name (``[a-z][a-z0-9_]{0,19}``) starts with a letter: it is never taken for the date.

An order the broker refused as too large for the buying power may be sent once more, smaller, under the
id derived from the first (:func:`resized_order_id`); it parses to the same account, session, decision and symbol.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

from openbell.store.scope import NAME as ACCOUNT_NAME
from openbell.store.scope import check_name

PREFIX = "ob-"
RESIZED = "-r"  # suffix of the one resized order that replaces a refused one
_ID = re.compile(rf"^ob-(?:({ACCOUNT_NAME})-)?(\d{{8}})-(\d{{6,}})-([A-Z0-9.\-/]{{1,20}})(-r)?\Z")


@dataclass(frozen=True)
class OrderKey:
    """The parts a client order id is built from; ``account`` None for the default account."""

    session_date: date
    decision_seq: int
    symbol: str
    account: str | None = None


def client_order_id(session_date: date, decision_seq: int, symbol: str, account: str | None = None) -> str:
    """``ob-YYYYMMDD-SEQ-SYMBOL`` for the default account (``ob-20251120-000042-TQQQ``), else
    ``ob-<account>-YYYYMMDD-SEQ-SYMBOL`` (``ob-alpha-20251120-000042-TQQQ``); at most 62 characters for a
    six-digit sequence, well under Alpaca's 128. ValueError for a name that is no account's."""
    if decision_seq < 0:
        raise ValueError(f"decision_seq must be >= 0, not {decision_seq}")
    sym = symbol.strip().upper()
    if not sym or len(sym) > 20:
        raise ValueError(f"bad symbol {symbol!r}")
    if account is None:
        return f"{PREFIX}{session_date:%Y%m%d}-{decision_seq:06d}-{sym}"
    return f"{PREFIX}{check_name(account)}-{session_date:%Y%m%d}-{decision_seq:06d}-{sym}"


def resized_order_id(value: str) -> str:
    """The id of the order sent once, resized, in place of ``value`` (``ob-20251120-000042-TQQQ-r``);
    ValueError for an id openbell did not build or one that is already a resize."""
    if parse_client_order_id(value) is None or is_resized(value):
        raise ValueError(f"no resized id derives from {value!r}")
    return value + RESIZED


def is_resized(value: str) -> bool:
    """True for the id of a resized order (:func:`resized_order_id`)."""
    m = _ID.match(value or "")
    return m is not None and m.group(5) is not None


def parse_client_order_id(value: str) -> OrderKey | None:
    """The key of an openbell id (any account's), or None for any id openbell did not build."""
    m = _ID.match(value or "")
    if not m:
        return None
    d = m.group(2)
    try:
        day = date(int(d[:4]), int(d[4:6]), int(d[6:]))
    except ValueError:
        return None
    return OrderKey(day, int(m.group(3)), m.group(4), m.group(1))


def is_ours(value: str, session_date: date | None = None, *, account: str | None = None) -> bool:
    """True for an id openbell built for ``account`` (of ``session_date`` when given).

    ``account`` is the account whose state is at hand (``openbell.store.scope.account_of(engine.url)``); None,
    the default account, owns only the untagged ids. Another account's id is not ours: it is foreign."""
    key = parse_client_order_id(value)
    return (key is not None and key.account == account
            and (session_date is None or key.session_date == session_date))
