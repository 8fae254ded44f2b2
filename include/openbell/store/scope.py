"""Whose state a database URL reaches: the default account's (schema ``public``) or a named account's.

Each account of an accounts file keeps its state (ledger, sessions, orders, fills, positions, parameter versions,
decisions, signals, equity, events) in a schema of its own, ``account_<name>``; bars are shared and live in
``public`` only. The account is carried by the URL itself (:func:`scoped_url` adds libpq's
``options=-csearch_path=account_<name>,public``), so every engine, raw connection and order worker built from
it reads and writes that account's tables, and ``bars`` (absent from the account's schema) resolves to
``public.bars``. Without an account the URL is unchanged and everything lives in ``public`` as it always has.

What a schema cannot separate is keyed here by the schema too: advisory-lock keys (:func:`lock_key`) and
``NOTIFY`` channels (:func:`channel`).
"""

from __future__ import annotations

import hashlib
import re

from sqlalchemy.engine import URL, make_url

DEFAULT_SCHEMA = "public"
SCHEMA_PREFIX = "account_"
NAME_MAX = 20  # trading_day_<name> is 32 characters at most, and an order-id tag leaves ids far under Alpaca's 128
NAME = rf"[a-z][a-z0-9_]{{0,{NAME_MAX - 1}}}"  # an account's name: never taken for a date, a schema's own name
_NAME = re.compile(rf"^{NAME}\Z")
_SEARCH_PATH = re.compile(r"-c\s*search_path=([a-z0-9_]+),public\b")


def account_schema(account: str | None) -> str:
    """The schema of ``account``'s state (``public`` for the default account, None)."""
    if account is None:
        return DEFAULT_SCHEMA
    return SCHEMA_PREFIX + check_name(account)


def check_name(account: object) -> str:
    """``account`` if it is an account's name (:data:`NAME`), else ValueError saying what a name is."""
    if not isinstance(account, str) or not _NAME.match(account):
        raise ValueError(f"not an account name: {account!r} ([a-z][a-z0-9_]*, at most {NAME_MAX} characters)")
    return account


def scoped_url(url: str, account: str | None) -> str:
    """``url`` reaching ``account``'s state (unchanged for the default account, None).

    ValueError when ``url`` already names a ``search_path`` or libpq ``options`` (one state database URL
    serves every account; the account is never given twice)."""
    if account is None:
        return url
    parsed = make_url(url)
    if "options" in parsed.query:
        raise ValueError("the state database URL already sets libpq options; openbell sets the account's schema")
    scoped = parsed.update_query_dict({"options": f"-csearch_path={account_schema(account)},public"})
    return scoped.render_as_string(hide_password=False)


def shared_url(url: str) -> str:
    """``url`` without an account's scope: the default account's state and the shared tables."""
    parsed = make_url(url)
    if schema_of(parsed) == DEFAULT_SCHEMA:
        return url
    return parsed.difference_update_query(["options"]).render_as_string(hide_password=False)


def schema_of(url: str | URL) -> str:
    """The schema whose state ``url`` reaches (``public`` unless :func:`scoped_url` made it an account's)."""
    parsed = make_url(url) if isinstance(url, str) else url
    options = parsed.query.get("options")
    found = _SEARCH_PATH.search(options if isinstance(options, str) else "")
    return found.group(1) if found else DEFAULT_SCHEMA


def account_of(url: str | URL) -> str | None:
    """The account whose state ``url`` reaches (None: the default account)."""
    schema = schema_of(url)
    return None if schema == DEFAULT_SCHEMA else schema.removeprefix(SCHEMA_PREFIX)


def channel(base: str, schema: str) -> str:
    """The ``NOTIFY`` channel on which ``schema``'s writes to ``base`` are announced (``base`` for ``public``);
    migration 0007's trigger and :mod:`openbell.store.events` compute the same in SQL."""
    return base if schema == DEFAULT_SCHEMA else f"{base}_{schema}"


def lock_key(purpose: str, schema: str) -> int:
    """A stable signed 64-bit advisory-lock key for ``purpose`` in ``schema`` (the default account's keys are
    those of before accounts existed)."""
    scope = "" if schema == DEFAULT_SCHEMA else f"{schema}:"
    digest = hashlib.blake2b(f"openbell:{scope}{purpose}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big", signed=True)
