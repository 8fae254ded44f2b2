"""The simulator's accounts, one per API key as at Alpaca: each has its own broker (cash, positions, orders,
fills, status), its own Trading API request budget and its own trade-updates stream; the market-data stream
limit counts per key. Market data is shared by all of them.

Without ``--account`` there is one account, the one of ``--api-key``, stored in ``<data_dir>/broker.sqlite``
as it always was; each ``--account NAME:KEY:SECRET`` is stored in ``<data_dir>/accounts/NAME/``.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from openbell.sim.broker import Broker
from openbell.sim.ratelimit import RateLimiter

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
SPEC_FORM = ("expected NAME:KEY:SECRET (NAME: up to 64 letters, digits, '-' or '_'; KEY without ':' and "
             "SECRET: printable ASCII without spaces)")


@dataclass(frozen=True)
class AccountSpec:
    """An account's name and credentials, as given by ``--account NAME:KEY:SECRET``."""

    name: str
    key: str
    secret: str = field(repr=False)


def _credential(text: str) -> bool:
    return bool(text) and text.isascii() and text.isprintable() and not any(c.isspace() for c in text)


def parse_account(text: str) -> AccountSpec:
    """``NAME:KEY:SECRET`` (the secret may hold ':'); the ValueError never shows the secret."""
    parts = text.split(":", 2)
    if len(parts) != 3 or not NAME.fullmatch(parts[0]) or not all(map(_credential, parts[1:])):
        raise ValueError(SPEC_FORM)
    return AccountSpec(*parts)


ACCOUNTS_ENV = "OPENBELL_SIM_ACCOUNTS"  # NAME:KEY:SECRET entries, one per line: secrets kept off the command line


def accounts_from_env(value: str) -> list[AccountSpec]:
    """The accounts of :data:`ACCOUNTS_ENV` (one ``NAME:KEY:SECRET`` per line; blank lines skipped); the
    ValueError names the line, never the secret."""
    specs = []
    for n, line in enumerate(value.splitlines(), 1):
        if line.strip():
            try:
                specs.append(parse_account(line.strip()))
            except ValueError as exc:
                raise ValueError(f"line {n}: {exc}") from None
    return specs


def check_unique(specs: Iterable[AccountSpec]) -> None:
    """ValueError if two accounts share a name or a key."""
    names: set[str] = set()
    keys: dict[str, str] = {}
    for s in specs:
        if s.name in names:
            raise ValueError(f"duplicate account name {s.name!r}")
        if s.key in keys:
            raise ValueError(f"accounts {keys[s.key]!r} and {s.name!r} have the same key")
        names.add(s.name)
        keys[s.key] = s.name


@dataclass(eq=False)
class Account:
    """One account: its credentials, broker and request budget."""

    spec: AccountSpec
    broker: Broker
    rate: RateLimiter

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def key(self) -> str:
        return self.spec.key


def find(accounts: Iterable[Account], key: str, secret: str) -> Account | None:
    """The account of this key if the secret is its own (compared in constant time), else None."""
    found = None
    for a in accounts:
        key_ok = hmac.compare_digest(key.encode(), a.spec.key.encode())
        secret_ok = hmac.compare_digest(secret.encode(), a.spec.secret.encode())
        if key_ok and secret_ok:
            found = a
    return found


def rate_report(rate: RateLimiter) -> dict[str, int]:
    """A request budget's limit and counters."""
    return {"limit": rate.limit, **rate.counters}


def totals(accounts: list[Account]) -> dict[str, Any]:
    """The broker counters and request counters of all accounts together (``peak``: the highest of any key)."""
    broker: dict[str, int] = {}
    rate = {"limit": accounts[0].rate.limit, "requests": 0, "limited": 0, "peak": 0}
    for a in accounts:
        for k, v in a.broker.counters.items():
            broker[k] = broker.get(k, 0) + v
        rate["requests"] += a.rate.counters["requests"]
        rate["limited"] += a.rate.counters["limited"]
        rate["peak"] = max(rate["peak"], a.rate.counters["peak"])
    return {"broker": broker, "rate_limit": rate}
