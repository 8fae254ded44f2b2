"""Which account a DAG trades: its DAGs when the DAG files are parsed, and at run time the account of a task.

Without an accounts file (:mod:`openbell.accounts`) there is one ``trading_day`` and one ``trading_control``
on ``alpaca_default`` with the state in schema ``public``, as always. With one, each valid account ``<name>``
has ``trading_day_<name>`` and ``trading_control_<name>`` (the names :func:`openbell.accounts.day_dag_id` and
:func:`~openbell.accounts.control_dag_id` give), trading its own connection with its own state
(:func:`openbell.store.scope.scoped_url`), run defaults and ceilings. Refused accounts get one stand-in DAG
that fails Airflow's validation with the refusals, so Airflow shows them as an import error of the DAG file while
the other accounts' DAGs load.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from openbell.accounts import ACCOUNTS_ENV, CONTROL_DAG, DAY_DAG, Account, account_dag_id, account_of_dag, load_accounts
from openbell.params import CEILING_FIELDS, RiskCeilings, RunParams, deployment_ceilings, run_defaults
from openbell.store.scope import scoped_url
from openbell.workflow.hooks import CONN_ID

DAY = DAY_DAG  # the two kinds of an account's DAGs (openbell.accounts)
CONTROL = CONTROL_DAG


class AccountRefused(ValueError):
    """A DAG's account is not in the accounts file, or the file refuses it; the message says why."""


@dataclass(frozen=True)
class DagAccount:
    """One account as the DAG files wire it: ``name`` None for the default account (no accounts file)."""

    name: str | None
    defaults: RunParams | None = None
    conn_id: str = CONN_ID  # the Alpaca connection (its market clock times the DAG's waits)

    def tags(self, *more: str) -> list[str]:
        """The DAG's tags: ``openbell``, ``more``, and ``account:<name>`` for a named account."""
        return ["openbell", *more, *([] if self.name is None else [f"account:{self.name}"])]

    def dag_id(self, kind: str) -> str:
        """``trading_day`` / ``trading_control``, suffixed ``_<name>`` for a named account."""
        return account_dag_id(kind, self.name)


@dataclass(frozen=True)
class DagAccounts:
    """The accounts to build DAGs for, and every refused account's reason, one per line ("": none)."""

    accounts: list[DagAccount]
    refused: str = ""


def dag_accounts(environ: Mapping[str, str] | None = None) -> DagAccounts:
    """The accounts to build DAGs for: the default account alone without an accounts file, else each valid account
    of the file in order, with the refusals of the others. A file refused as a whole raises
    :class:`AccountRefused` (the DAG file then fails to import, naming the file)."""
    import os

    env = os.environ if environ is None else environ
    found = load_accounts(env)
    if found is None:
        return DagAccounts([DagAccount(None, run_defaults(env))])
    whole = [str(e) for e in found.errors if e.name is None]
    if whole or not (found.accounts or found.errors):
        raise AccountRefused("; ".join(whole) or f"{found.path}: no account")
    return DagAccounts([DagAccount(a.name, _within_ceilings(a, a.run_defaults(run_defaults(env))), conn_id=a.conn_id)
                        for a in found.accounts], "\n".join(str(e) for e in found.errors))


def _within_ceilings(account: Account, defaults: RunParams) -> RunParams:
    """``defaults`` with each limit the account caps lowered to its ceiling where looser (a scheduled run of the
    account is never refused for asking more than the account allows)."""
    values = defaults.model_dump()
    for name in CEILING_FIELDS:
        cap = getattr(account, name)
        if cap is not None and (values[name] is None or values[name] > cap):
            values[name] = cap
    return RunParams(**values)


def run_account(context: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> Account | None:
    """The account of the running task's DAG (None: the default account,
    :func:`~openbell.accounts.account_of_dag`), read from the accounts file now:
    :class:`AccountRefused` when the file no longer has it or refuses it, so nothing trades on a stale one."""
    import os

    dag_run = context.get("dag_run")
    dag_id = getattr(dag_run, "dag_id", None) or getattr(context.get("dag"), "dag_id", None) or DAY
    name = account_of_dag(str(dag_id))
    if name is None:
        return None
    found = load_accounts(os.environ if environ is None else environ)
    if found is None:
        raise AccountRefused(f"DAG {dag_id} trades account {name!r}, but {ACCOUNTS_ENV} names no accounts file")
    for account in found.accounts:
        if account.name == name:
            return account
    why = [str(e) for e in found.errors if e.name in (name, None)]
    raise AccountRefused(f"DAG {dag_id}: account {name!r} " + (f"is refused: {'; '.join(why)}" if why
                                                               else f"is not in {found.path}"))


def account_state_url(url: str, account: Account | None) -> str:
    """The state database URL reaching ``account``'s state."""
    return scoped_url(url, None if account is None else account.name)


def account_ceilings(account: Account | None) -> RiskCeilings:
    """The deployment's ceilings, tightened by the account's."""
    deployment = deployment_ceilings()
    return deployment if account is None else account.ceilings(deployment)


def refused_dag(kind: str, why: str) -> Any:
    """A stand-in DAG (``<kind>__refused_accounts``, never an account's id) whose validation fails with ``why``:
    Airflow shows that as an import error of the DAG file, naming every refused account, and loads the file's
    other DAGs as usual."""
    import pendulum
    from airflow.sdk import DAG

    class RefusedAccountDag(DAG):
        def validate(self) -> None:
            raise AccountRefused(why)

    return RefusedAccountDag(f"{kind}__refused_accounts", schedule=None,
                             start_date=pendulum.datetime(2020, 1, 1, tz="UTC"), tags=["openbell", "refused"])


def check_account_run_params(context: Any) -> None:
    """Refuse the run's params (:class:`~openbell.params.InvalidRunParams`) when invalid or looser than the
    ceilings of its account (the deployment's, tightened by the account's)."""
    RunParams.from_mapping(dict(context.get("params") or {}), ceilings=account_ceilings(run_account(context)))
