"""The accounts the Trading view offers, and which of them a user may see.

Without an accounts file there is one account, the default one (None; its state in schema ``public``, its
broker the ``alpaca_default`` connection). With one, the file's valid accounts, in file order. A request names
its account with ``?account=<name>`` (or, from the Airflow UI's tab of a DAG run, ``?dag_id=<its DAG>``: the account
of ``trading_day_<name>`` or ``trading_control_<name>``); without it the view shows the first account the user
may see. Whether
a user may see an account is whether Airflow lets them read its ``trading_day`` DAG
(:func:`openbell.accounts.day_dag_id`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import HTTPException
from sqlalchemy import Engine

from openbell.accounts import DAG_BASES, day_dag_id
from openbell.accounts import account_of_dag as named_account
from openbell.ui.auth import ReadCheck
from openbell.ui.market import Market

DEFAULT_CONN_ID = "alpaca_default"  # openbell.adapters.alpaca.config.CONN_ID
RELOAD_SECONDS = 30.0  # how long the accounts file, once read, is taken as it was

# -> account name (None: the default account) -> its Airflow connection, in the order the view offers them
AccountsSource = Callable[[], Mapping[str | None, str]]


def file_accounts() -> dict[str | None, str]:
    """The accounts file's valid accounts (``OPENBELL_ACCOUNTS``), or the default account when there is none."""
    from openbell.accounts import load_accounts

    found = load_accounts()
    if found is None:
        return {None: DEFAULT_CONN_ID}
    return {a.name: a.conn_id for a in found.accounts}


def account_of_dag(dag_id: str | None, known: Mapping[str | None, str]) -> tuple[bool, str | None]:
    """``(True, account)`` when ``dag_id`` is a known account's ``trading_day`` or ``trading_control``, else
    ``(False, None)`` (:func:`openbell.accounts.account_of_dag` reads the account a DAG id names)."""
    if not dag_id:
        return False, None
    name = named_account(dag_id)
    if name is None and dag_id not in DAG_BASES:  # a DAG not named after any account
        return False, None
    return (True, name) if name in known else (False, None)


@dataclass
class AccountView:
    """What the view holds open for one account: its engine (on its schema) and its broker."""

    account: str | None
    schema: str
    engine: Engine
    market: Market
    task: asyncio.Task[None] | None = None


class Accounts:
    """The accounts offered (read at most every ``RELOAD_SECONDS``) and the choice among them for a user."""

    def __init__(self, source: AccountsSource, may_read: ReadCheck) -> None:
        self._source = source
        self.may_read = may_read
        self._known: dict[str | None, str] | None = None
        self._read_at = -float("inf")

    async def known(self) -> dict[str | None, str]:
        """Every account offered (name -> connection); 503 when the accounts file cannot be read."""
        if self._known is None or time.monotonic() - self._read_at > RELOAD_SECONDS:
            try:
                self._known = dict(await asyncio.to_thread(self._source))
            except Exception as exc:
                raise HTTPException(503, f"the accounts file cannot be read: {type(exc).__name__}") from None
            self._read_at = time.monotonic()
        return self._known

    async def visible(self, who: Any) -> list[str | None]:
        """The accounts ``who`` may see, in order."""
        return [name for name in await self.known() if await self.may_read(who, day_dag_id(name))]

    async def choose(self, who: Any, name: str | None, dag_id: str | None = None) -> str | None:
        """The account asked for (``name``, else the one of ``dag_id``), else the first one ``who`` may see.

        404 for a name that is no account; 403 when ``who`` may not read its ``trading_day`` DAG, or may see
        no account at all."""
        known = await self.known()
        found, of_dag = account_of_dag(dag_id, known)
        if not name and found:
            if not await self.may_read(who, day_dag_id(of_dag)):
                raise HTTPException(403, f"Airflow does not let you read {day_dag_id(of_dag)}")
            return of_dag
        if name:
            if name not in known:
                raise HTTPException(404, f"no account named {name!r} in the Trading view")
            if not await self.may_read(who, day_dag_id(name)):
                raise HTTPException(403, f"Airflow does not let you read {day_dag_id(name)}, so not account {name!r}")
            return name
        for account in known:
            if await self.may_read(who, day_dag_id(account)):
                return account
        if list(known) == [None]:
            raise HTTPException(403, "log in to Airflow first")  # as before accounts existed
        raise HTTPException(403, "Airflow lets you read no account's trading_day DAG")
