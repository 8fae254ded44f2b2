"""The accounts file: the Alpaca accounts openbell trades, each under its own name and Airflow connection.

The environment variable ``OPENBELL_ACCOUNTS`` holds the file's path; unset or empty, there is no accounts file
(:func:`load_accounts` returns None) and the one ``trading_day`` DAG trades ``alpaca_default`` as before. The file
is YAML (``.yaml``, ``.yml``) or TOML (``.toml``), chosen by its extension, with one key, ``accounts``, a list::

    accounts:
      - name: main                  # [a-z][a-z0-9_]*, at most 20 characters
        conn_id: alpaca_default     # the Airflow connection holding the account's key id and secret
      - name: small
        conn_id: alpaca_small
        strategy: ob_example:Leaders
        strategy_params: {lookback: 20}
        universe: [TQQQ, SQQQ]
        daily_loss_limit: 0.02      # the account's risk ceilings: tighten the deployment's, never loosen
        max_order_notional: 5000

In TOML each account is an ``[[accounts]]`` table with the same keys. ``strategy``, ``strategy_params`` and
``universe`` are the account's run defaults (over ``OPENBELL_RUN_DEFAULTS``); ``daily_loss_limit``,
``max_gross``, ``max_order_notional``, ``max_position_notional`` and ``price_collar``
(:data:`~openbell.params.CEILING_FIELDS`) its risk ceilings. Each is checked by :class:`~openbell.params.RunParams`,
so the same bounds, strategies and messages apply as to a run. A broken account is refused on its own
(:class:`AccountError`, naming the file, the account and the field); the others stay valid.

Each account ``<name>`` has two DAGs, ``trading_day_<name>`` and ``trading_control_<name>``; the default account's
are ``trading_day`` and ``trading_control``. :func:`day_dag_id`, :func:`control_dag_id` and :func:`account_of_dag`
are the one definition of those names.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, StringConstraints, ValidationError, ValidationInfo, model_validator

from openbell.params import CEILING_FIELDS, InvalidRunParams, RiskCeilings, RunParams, run_defaults
from openbell.store.scope import NAME, NAME_MAX

ACCOUNTS_ENV = "OPENBELL_ACCOUNTS"
NAME_PATTERN = rf"^{NAME}\Z"  # openbell.store.scope.NAME: the same names key schemas and order ids
RUN_FIELDS = ("strategy", "strategy_params", "universe", *CEILING_FIELDS)
PAPER_TRADING_URL = "https://paper-api.alpaca.markets"  # as openbell.adapters.alpaca.config reads a connection
LIVE_TRADING_URL = "https://api.alpaca.markets"
DAY_DAG = "trading_day"  # the default account's DAGs; a named account's add "_<name>"
CONTROL_DAG = "trading_control"
DAG_BASES = (DAY_DAG, CONTROL_DAG)

# conn_id -> (key id, trading URL) of the Airflow connection, None when there is no such connection
ConnectionLookup = Callable[[str], tuple[str, str] | None]


def account_dag_id(base: str, account: str | None) -> str:
    """The DAG ``base`` (:data:`DAY_DAG` or :data:`CONTROL_DAG`) of ``account`` (None: the default account)."""
    return base if account is None else f"{base}_{account}"


def day_dag_id(account: str | None) -> str:
    """The ``trading_day`` DAG of ``account`` (None: the default account)."""
    return account_dag_id(DAY_DAG, account)


def control_dag_id(account: str | None) -> str:
    """The ``trading_control`` DAG of ``account`` (None: the default account)."""
    return account_dag_id(CONTROL_DAG, account)


def account_of_dag(dag_id: str) -> str | None:
    """The account a DAG id names (``trading_day_alpha`` -> ``alpha``); None for the default account's
    ``trading_day`` and ``trading_control`` and for any DAG not named after an account (a DAG of one's own
    that calls openbell's steps trades the default account, as before accounts existed)."""
    for base in DAG_BASES:
        if dag_id.startswith(base + "_"):
            return dag_id[len(base) + 1:]
    return None


class Account(BaseModel):
    """One account of the file. Only the keys given are set (``model_fields_set``); every run parameter among
    them has passed :class:`~openbell.params.RunParams` over the deployment's run defaults."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, regex_engine="python-re",
                              hide_input_in_errors=True)

    name: Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
    conn_id: Annotated[str, StringConstraints(min_length=1, max_length=250, pattern=r"^\S+\Z")]
    strategy: str | None = None
    strategy_params: dict[str, Any] | None = None
    universe: list[str] | None = None
    daily_loss_limit: float | None = None
    max_gross: float | None = None
    max_order_notional: float | None = None
    max_position_notional: float | None = None
    price_collar: float | None = None

    @model_validator(mode="after")
    def _a_valid_run(self, info: ValidationInfo) -> Account:
        """The given run parameters as :class:`RunParams` checks them, over the run defaults of the context's
        ``defaults`` (else :func:`~openbell.params.run_defaults`); a new strategy starts from its own params."""
        defaults = (info.context or {}).get("defaults") or run_defaults()
        self.run_defaults(defaults, ceilings=True)
        return self

    def run_defaults(self, deployment: RunParams, *, ceilings: bool = False) -> RunParams:
        """The account's run defaults over the deployment's (a strategy it names starts from its own params);
        with ``ceilings``, its ceilings checked as run parameters too."""
        values = deployment.model_dump()
        if "strategy" in self.model_fields_set:
            values["strategy_params"] = None
        fields = RUN_FIELDS if ceilings else RUN_FIELDS[:3]
        values.update({k: getattr(self, k) for k in fields if k in self.model_fields_set})
        return RunParams(**values)

    def run_params(self) -> dict[str, Any]:
        """The run defaults the account sets (``strategy``, ``strategy_params``, ``universe``)."""
        return {k: getattr(self, k) for k in RUN_FIELDS[:3] if k in self.model_fields_set}

    def ceilings(self, deployment: RiskCeilings) -> RiskCeilings:
        """The deployment's ceilings, each tightened by the account's where it sets a lower one (None: none)."""
        tighter: dict[str, float | None] = {}
        for name in CEILING_FIELDS:
            mine, theirs = getattr(self, name), getattr(deployment, name)
            tighter[name] = theirs if mine is None else mine if theirs is None else min(mine, theirs)
        return RiskCeilings(**tighter)


@dataclass(frozen=True)
class AccountError:
    """Why an account (``name``; None for a problem of the whole file) is refused."""

    path: Path
    name: str | None
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass(frozen=True)
class AccountsFile:
    """The valid accounts of a file, in file order, and one :class:`AccountError` per refused one."""

    path: Path
    accounts: tuple[Account, ...] = ()
    errors: tuple[AccountError, ...] = ()


def load_accounts(environ: Mapping[str, str] = os.environ, lookup: ConnectionLookup | None = None,
                  defaults: RunParams | None = None) -> AccountsFile | None:
    """The accounts file :data:`ACCOUNTS_ENV` names, None when it names none. ``lookup`` reads a connection
    (default: :func:`airflow_connection`), ``defaults`` are the run defaults (default: ``run_defaults``, which
    refuses unusable ``OPENBELL_RUN_DEFAULTS`` with :class:`~openbell.params.InvalidRunParams`)."""
    raw = environ.get(ACCOUNTS_ENV, "").strip()
    if not raw:
        return None
    return read_accounts(Path(raw), lookup or airflow_connection, defaults or run_defaults(environ))


def read_accounts(path: Path, lookup: ConnectionLookup, defaults: RunParams) -> AccountsFile:
    """The accounts of the file at ``path`` (see the module's docstring)."""
    try:
        entries = _entries(path)
    except _FileRefused as exc:
        return AccountsFile(path, errors=(AccountError(path, None, str(exc)),))
    labels = [_label(i, e) for i, e in enumerate(entries)]
    problems: list[list[str]] = [[] for _ in entries]
    accounts: list[Account | None] = []
    for entry, found in zip(entries, problems, strict=True):
        try:
            accounts.append(Account.model_validate(entry, context={"defaults": defaults}))
        except ValidationError as exc:
            accounts.append(None)
            found.extend(_described(exc))
    names = [e.get("name") if isinstance(e, dict) else None for e in entries]
    for i, name in enumerate(names):
        others = [labels[j] for j, n in enumerate(names) if j != i and isinstance(name, str) and n == name]
        if others:
            problems[i].append(f"'name': {name!r} is also the name of {', '.join(others)} (each of them refused: "
                               "which one the name means cannot be told)")
    _check_connections(entries, labels, problems, lookup)
    good = tuple(a for a, found in zip(accounts, problems, strict=True) if a is not None and not found)
    errors = tuple(AccountError(path, n if isinstance(n, str) else None, f"{label}: {'; '.join(found)}")
                   for n, label, found in zip(names, labels, problems, strict=True) if found)
    return AccountsFile(path, good, errors)


def airflow_connection(conn_id: str) -> tuple[str, str] | None:
    """``(key id, trading URL)`` of an Airflow connection, read as the Alpaca adapter reads it (login = key id;
    extra ``simulator_url``, else ``trading_url``, else Alpaca's paper URL, or its live URL when ``paper`` is
    false); None when there is no such connection. The secret is never read."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        conn = BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        return None
    extra = conn.extra_dejson if conn.extra else {}
    paper = extra.get("paper", True)
    live = paper is False or (isinstance(paper, str) and paper.strip().lower() == "false")
    url = extra.get("simulator_url") or extra.get("trading_url") or (LIVE_TRADING_URL if live else PAPER_TRADING_URL)
    return conn.login or "", str(url)


# -- the file ----------------------------------------------------------------------------------------------


class _FileRefused(ValueError):
    """The file as a whole cannot be read as a list of accounts."""


def _entries(path: Path) -> list[Any]:
    """The file's list of accounts, as parsed (each item still to be checked)."""
    kind = {".yaml": "YAML", ".yml": "YAML", ".toml": "TOML"}.get(path.suffix.lower())
    if kind is None:
        raise _FileRefused(f"{ACCOUNTS_ENV}: the accounts file must end in .yaml, .yml or .toml")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise _FileRefused(f"{ACCOUNTS_ENV}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise _FileRefused(f"{ACCOUNTS_ENV}: the file cannot be read as UTF-8 text ({type(exc).__name__})") from None
    try:
        data = _yaml(text) if kind == "YAML" else tomllib.loads(text)
    except Exception as exc:  # yaml.YAMLError, tomllib.TOMLDecodeError, a duplicate key
        raise _FileRefused(f"not {kind}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    if not isinstance(data, dict) or set(data) != {"accounts"}:
        shown = sorted(map(str, data)) if isinstance(data, dict) else type(data).__name__
        raise _FileRefused(f"the file must hold one key, 'accounts', a list of accounts; it holds {shown}")
    entries = data["accounts"]
    if not isinstance(entries, list) or not entries:
        raise _FileRefused("'accounts' must be a non-empty list of accounts")
    return entries


def _yaml(text: str) -> Any:
    """YAML's safe subset, a key given twice in one mapping refused (PyYAML would keep the last silently)."""
    import yaml

    class Loader(yaml.SafeLoader):
        def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
            keys = [self.construct_object(k, deep=True) for k, _ in node.value]
            for key in keys:
                if keys.count(key) > 1:
                    raise ValueError(f"the key {key!r} is given twice (line {node.start_mark.line + 1})")
            return super().construct_mapping(node, deep=deep)

    return yaml.load(text, Loader=Loader)


def _label(index: int, entry: Any) -> str:
    """How a message names an account: its name when it has a string one, and its place in the list."""
    name = entry.get("name") if isinstance(entry, dict) else None
    return f"account {name!r} (#{index + 1})" if isinstance(name, str) else f"account #{index + 1}"


def _described(exc: ValidationError) -> list[str]:
    """pydantic's refusals of an account, each naming the field (a run parameter's as :class:`RunParams` says)."""
    out = []
    for err in exc.errors():
        cause = err.get("ctx", {}).get("error")
        if isinstance(cause, InvalidRunParams):
            out.append(str(cause).removeprefix("run parameter "))
            continue
        where = ".".join(str(p) for p in err["loc"])
        if not where:
            out.append("an account must be a mapping of keys (name, conn_id, ...)")
        elif err["type"] == "extra_forbidden":
            out.append(f"{where!r}: unknown key; an account has {', '.join(Account.model_fields)}")
        elif err["type"] == "missing":
            out.append(f"{where!r}: missing")
        elif where == "name" and err["type"] == "string_pattern_mismatch":
            out.append(f"'name': {err['input']!r} is not lowercase letters, digits and '_' starting with a letter, "
                       f"at most {NAME_MAX} characters")
        else:
            quote = " (YAML reads yes, no, on, off unquoted as true/false: quote it)" if (
                err["type"] == "string_type" and isinstance(err.get("input"), bool)) else ""
            out.append(f"{where!r}: {err['msg']}{quote}")
    return out


# -- the connections ---------------------------------------------------------------------------------------


def _check_connections(entries: list[Any], labels: list[str], problems: list[list[str]],
                       lookup: ConnectionLookup) -> None:
    """Refuse an account whose connection is missing or has no key id, and every account sharing a key id
    on one trading URL with another (Alpaca allows one stream per key: each would cut the other's)."""
    holders: dict[tuple[str, str], list[int]] = {}
    for i, entry in enumerate(entries):
        conn_id = entry.get("conn_id") if isinstance(entry, dict) else None
        if not (isinstance(conn_id, str) and conn_id):
            continue
        try:
            found = lookup(conn_id)
        except Exception as exc:  # the lookup's own message may hold a URI: only its type is shown
            problems[i].append(f"'conn_id': connection {conn_id!r} cannot be read ({type(exc).__name__})")
            continue
        if found is None:
            problems[i].append(f"'conn_id': no Airflow connection {conn_id!r}")
        elif not found[0].strip():
            problems[i].append(f"'conn_id': connection {conn_id!r} has no key id (login)")
        else:
            holders.setdefault((found[0].strip(), _same_url(found[1])), []).append(i)
    for sharing in holders.values():
        for i in sharing if len(sharing) > 1 else ():
            others = ", ".join(labels[j] for j in sharing if j != i)
            problems[i].append(f"'conn_id': connection {entries[i]['conn_id']!r} holds the key id of {others} on the "
                               "same trading URL (Alpaca allows one stream connection per key, so each would cut "
                               "the other's: each of them refused)")


def _same_url(url: str) -> str:
    """``url`` as compared: scheme and host lowercased, no default port, no trailing slash, query or fragment."""
    text = url.strip()
    try:
        parts = urlsplit(text if "://" in text else "https://" + text)
        port_number = parts.port
    except ValueError:  # no client reaches it either; compared as written
        return text
    host = (parts.hostname or "").rstrip(".")
    default = {"https": 443, "http": 80}.get(parts.scheme.lower())
    port = f":{port_number}" if port_number not in (None, default) else ""
    return f"{parts.scheme.lower()}://{host}{port}{parts.path.rstrip('/')}"
