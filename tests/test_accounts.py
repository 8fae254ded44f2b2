"""The accounts file: each broken account refused on its own, naming the file, the account and the field."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from openbell.accounts import (
    ACCOUNTS_ENV,
    NAME_MAX,
    RUN_FIELDS,
    Account,
    AccountsFile,
    account_of_dag,
    airflow_connection,
    control_dag_id,
    day_dag_id,
    load_accounts,
    read_accounts,
)
from openbell.params import CEILING_FIELDS, InvalidRunParams, RiskCeilings, RunParams

PAPER = "https://paper-api.alpaca.markets"
SECRET_KEY_ID = "PKSECRETKEYID0001"
CONNECTIONS: dict[str, tuple[str, str]] = {
    "alpaca_default": ("PKMAIN", PAPER),
    "alpaca_small": ("PKSMALL", PAPER),
    "alpaca_secret": (SECRET_KEY_ID, PAPER),
    "alpaca_secret_too": (SECRET_KEY_ID, PAPER.upper() + ":443/"),  # the same URL, spelled otherwise
    "alpaca_secret_sim": (SECRET_KEY_ID, "http://127.0.0.1:5055"),  # the same key, another trading URL
    "alpaca_nokey": ("  ", PAPER),
}

YAML = """\
accounts:
  - name: main
    conn_id: alpaca_default
  - name: small_2
    conn_id: alpaca_small
    strategy: ob_example:Leaders
    strategy_params: {lookback: 20}
    universe: [TQQQ, SQQQ]
    daily_loss_limit: 0.02
    max_order_notional: 5000
    price_collar: null
"""

TOML = """\
[[accounts]]
name = "main"
conn_id = "alpaca_default"

[[accounts]]
name = "small_2"
conn_id = "alpaca_small"
strategy = "ob_example:Leaders"
strategy_params = { lookback = 20 }
universe = ["TQQQ", "SQQQ"]
daily_loss_limit = 0.02
max_order_notional = 5000
"""

MAIN = {"name": "main", "conn_id": "alpaca_default"}
SMALL = {"name": "small", "conn_id": "alpaca_small"}


def read(tmp_path: Path, text: str, name: str = "accounts.yaml", defaults: RunParams | None = None,
         lookup: Any = CONNECTIONS.get) -> AccountsFile:
    path = tmp_path / name
    path.write_text(text)
    return read_accounts(path, lookup, defaults or RunParams())


def read_entries(tmp_path: Path, *entries: dict[str, Any], **kw: Any) -> AccountsFile:
    import yaml

    return read(tmp_path, yaml.safe_dump({"accounts": list(entries)}), **kw)


def refused(tmp_path: Path, entry: dict[str, Any], **kw: Any) -> str:
    """The one error of ``entry`` listed after a valid account, which stays valid."""
    found = read_entries(tmp_path, MAIN, entry, **kw)
    assert [a.name for a in found.accounts] == ["main"], found
    assert len(found.errors) == 1, found.errors
    message = str(found.errors[0])
    assert message.startswith(f"{tmp_path / 'accounts.yaml'}: account "), message
    return message


# -- no file, a good file ----------------------------------------------------------------------------------


@pytest.mark.parametrize("environ", [{}, {ACCOUNTS_ENV: ""}, {ACCOUNTS_ENV: "  "}])
def test_without_the_variable_there_is_no_accounts_file(environ: dict[str, str]) -> None:
    assert load_accounts(environ, lookup=CONNECTIONS.get, defaults=RunParams()) is None


@pytest.mark.parametrize(("name", "text"), [("a.yaml", YAML), ("a.yml", YAML), ("a.toml", TOML), ("a.TOML", TOML)])
def test_a_good_file_gives_its_accounts_in_order(tmp_path: Path, name: str, text: str) -> None:
    (tmp_path / name).write_text(text)
    found = load_accounts({ACCOUNTS_ENV: str(tmp_path / name)}, lookup=CONNECTIONS.get, defaults=RunParams())
    assert found is not None and found.errors == () and found.path == tmp_path / name
    main, small = found.accounts
    assert (main.name, main.conn_id, main.run_params()) == ("main", "alpaca_default", {})
    assert main.model_fields_set == {"name", "conn_id"}
    assert small.run_params() == {"strategy": "ob_example:Leaders", "strategy_params": {"lookback": 20},
                                  "universe": ["TQQQ", "SQQQ"]}
    assert (small.daily_loss_limit, small.max_order_notional, small.max_gross) == (0.02, 5000.0, None)


def test_an_account_tightens_the_deployment_ceilings_never_loosens_them(tmp_path: Path) -> None:
    small = read(tmp_path, YAML).accounts[1]
    deployment = RiskCeilings(daily_loss_limit=0.01, max_gross=1.5, max_order_notional=None, price_collar=0.05)
    assert small.ceilings(deployment) == RiskCeilings(daily_loss_limit=0.01, max_gross=1.5, max_order_notional=5000,
                                                      max_position_notional=None, price_collar=0.05)
    assert read(tmp_path, YAML).accounts[0].ceilings(deployment) == deployment


def test_the_account_fields_are_the_run_parameters_params_knows() -> None:
    assert set(RUN_FIELDS) <= set(RunParams.model_fields)
    assert set(Account.model_fields) == {"name", "conn_id", *RUN_FIELDS}
    assert set(CEILING_FIELDS) <= set(RUN_FIELDS)


# -- the file as a whole -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "text", "says"),
    [
        ("a.json", '{"accounts": []}', "must end in .yaml, .yml or .toml"),
        ("a.yaml", "accounts: [", "not YAML"),
        ("a.toml", "[[accounts]\nname = 1", "not TOML"),
        ("a.yaml", TOML, "not YAML"),  # TOML under a YAML name
        ("a.toml", YAML, "not TOML"),
        ("a.yaml", "", "one key, 'accounts'"),
        ("a.toml", "", "one key, 'accounts'"),
        ("a.yaml", "- name: main\n  conn_id: alpaca_default\n", "one key, 'accounts', a list of accounts; it holds "
                                                               "list"),
        ("a.yaml", "accounts: []\nextra: 1\n", "it holds ['accounts', 'extra']"),
        ("a.yaml", "account:\n  - name: main\n", "it holds ['account']"),
        ("a.yaml", "accounts: []\n", "non-empty list"),
        ("a.yaml", "accounts:\n", "non-empty list"),
        ("a.yaml", "accounts: {name: main}\n", "non-empty list"),
        ("a.yaml", "accounts:\n  - name: main\n    conn_id: a\n    conn_id: b\n", "'conn_id' is given twice"),
    ],
)
def test_a_broken_file_is_one_error(tmp_path: Path, name: str, text: str, says: str) -> None:
    found = read(tmp_path, text, name)
    assert found.accounts == () and len(found.errors) == 1
    error = found.errors[0]
    assert error.name is None and str(error).startswith(f"{tmp_path / name}: ") and says in str(error), error


def test_a_missing_or_unreadable_file_is_one_error(tmp_path: Path) -> None:
    missing = read_accounts(tmp_path / "none.yaml", CONNECTIONS.get, RunParams())
    (tmp_path / "dir.yaml").mkdir()
    directory = read_accounts(tmp_path / "dir.yaml", CONNECTIONS.get, RunParams())
    (tmp_path / "latin.yaml").write_bytes(b"accounts:\n  - name: caf\xe9\n")
    latin = read_accounts(tmp_path / "latin.yaml", CONNECTIONS.get, RunParams())
    assert [str(e) for e in missing.errors] == [f"{tmp_path / 'none.yaml'}: OPENBELL_ACCOUNTS: no such file"]
    assert "cannot be read" in str(directory.errors[0]) and "cannot be read" in str(latin.errors[0])
    assert missing.accounts == directory.accounts == latin.accounts == ()


# -- one account -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["Main", "main-2", "2main", "_main", "main\n", "", "a" * (NAME_MAX + 1), "mäin"])
def test_a_bad_name_is_refused(tmp_path: Path, name: str) -> None:
    message = refused(tmp_path, {"name": name, "conn_id": "alpaca_small"})
    assert f"'name': {name!r} is not lowercase letters, digits and '_'" in message
    assert f"at most {NAME_MAX} characters" in message


def test_the_longest_name_is_accepted(tmp_path: Path) -> None:
    found = read_entries(tmp_path, {"name": "a" * NAME_MAX, "conn_id": "alpaca_default"})
    assert [a.name for a in found.accounts] == ["a" * NAME_MAX] and found.errors == ()
    assert len(f"trading_day_{'a' * NAME_MAX}") <= 250


@pytest.mark.parametrize(
    ("entry", "says"),
    [
        ({"name": "small"}, "'conn_id': missing"),
        ({"conn_id": "alpaca_small"}, "account #2: 'name': missing"),
        ({"name": "small", "conn_id": ""}, "'conn_id': String should have at least 1 character"),
        ({"name": "small", "conn_id": 5}, "'conn_id': Input should be a valid string"),
        ({**SMALL, "stratgy": "momentum_rotation"}, "'stratgy': unknown key; an account has name, conn_id, strategy"),
        ({**SMALL, "max_weight": 0.5}, "'max_weight': unknown key"),
        ({"name": "small", "conn_id": "alpaca_nowhere"}, "'conn_id': no Airflow connection 'alpaca_nowhere'"),
        ({"name": "small", "conn_id": "alpaca_nokey"}, "'conn_id': connection 'alpaca_nokey' has no key id"),
    ],
)
def test_a_bad_name_key_or_connection_is_refused_naming_it(tmp_path: Path, entry: dict[str, Any], says: str) -> None:
    assert says in refused(tmp_path, entry)


def test_a_word_yaml_reads_as_a_boolean_is_refused_with_a_hint(tmp_path: Path) -> None:
    found = read(tmp_path, "accounts:\n  - {name: main, conn_id: alpaca_default, universe: [TQQQ, ON]}\n")
    assert found.accounts == () and "'universe.1': Input should be a valid string (YAML reads yes, no, on, off " \
        "unquoted as true/false: quote it)" in str(found.errors[0])
    assert read(tmp_path, "accounts:\n  - {name: main, conn_id: alpaca_default, universe: [TQQQ, 'ON']}\n").errors == ()


def test_an_account_that_is_not_a_mapping_is_refused(tmp_path: Path) -> None:
    found = read(tmp_path, "accounts:\n  - name: main\n    conn_id: alpaca_default\n  - small\n")
    assert [a.name for a in found.accounts] == ["main"]
    assert [str(e) for e in found.errors] == [f"{tmp_path / 'accounts.yaml'}: account #2: an account must be a "
                                              f"mapping of keys (name, conn_id, ...)"]


@pytest.mark.parametrize(
    ("entry", "says"),
    [
        ({**SMALL, "strategy": "mean_reversion"}, "'strategy': unknown strategy 'mean_reversion'"),
        ({**SMALL, "strategy": "ob_example:Nothing"}, "'strategy': strategy 'ob_example:Nothing': module "
                                                      "'ob_example' has no 'Nothing'"),
        ({**SMALL, "strategy_params": {"lookback": 1}}, "'strategy_params': invalid momentum_rotation params: "
                                                        "lookback: Input should be greater than or equal to 2"),
        ({**SMALL, "strategy": "ob_example:Leaders", "strategy_params": {"vol_window": 60}},
         "'strategy_params': invalid ob_example:Leaders params: vol_window: Extra inputs are not permitted"),
        ({**SMALL, "strategy_params": "lookback=10"}, "'strategy_params': Input should be a valid dictionary"),
        ({**SMALL, "universe": ["tqqq"]}, "'universe[0]': 'tqqq' does not match"),
        ({**SMALL, "universe": []}, "'universe': [] should be non-empty"),
        ({**SMALL, "universe": ["TQQQ", "TQQQ"]}, "'universe': ['TQQQ', 'TQQQ'] has non-unique elements"),
        ({**SMALL, "universe": "TQQQ"}, "'universe': Input should be a valid list"),
        ({**SMALL, "daily_loss_limit": 0}, "'daily_loss_limit': 0.0 is less than or equal to the minimum of 0"),
        ({**SMALL, "daily_loss_limit": 0.6}, "'daily_loss_limit': 0.6 is greater than the maximum of 0.5"),
        ({**SMALL, "daily_loss_limit": None}, "'daily_loss_limit': None is not of type 'number'"),
        ({**SMALL, "max_gross": math.nan}, "'max_gross': NaN is not a number"),
        ({**SMALL, "max_gross": "1.0"}, "'max_gross': Input should be a valid number"),
        ({**SMALL, "max_gross": True}, "'max_gross': Input should be a valid number"),
        ({**SMALL, "max_order_notional": -5}, "'max_order_notional': -5.0 is less than or equal to the minimum"),
        ({**SMALL, "max_position_notional": 1e13}, "'max_position_notional': 10000000000000.0 is greater than the "
                                                        "maximum"),
        ({**SMALL, "price_collar": 2}, "'price_collar': 2.0 is greater than the maximum of 1"),
    ],
)
def test_a_run_parameter_params_refuses_is_refused_naming_the_field(tmp_path: Path, entry: dict[str, Any],
                                                                      says: str) -> None:
    message = refused(tmp_path, entry)
    assert message.startswith(f"{tmp_path / 'accounts.yaml'}: account 'small' (#2): "), message
    assert says in message, message


def test_a_strategy_module_that_raises_on_import_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "ob_broken_on_import.py").write_text("raise RuntimeError('not today')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    message = refused(tmp_path, {**SMALL, "strategy": "ob_broken_on_import:Leaders"})
    assert ("'strategy': strategy 'ob_broken_on_import:Leaders': module 'ob_broken_on_import' does not import: "
            "RuntimeError: not today") in message


def test_a_new_strategy_starts_from_its_own_params_not_the_defaults(tmp_path: Path) -> None:
    defaults = RunParams(strategy_params={"vol_window": 100})  # momentum_rotation's, which Leaders refuses
    found = read_entries(tmp_path, {**SMALL, "strategy": "ob_example:Leaders"}, {**MAIN, "universe": ["TQQQ"]},
                         defaults=defaults)
    assert [a.name for a in found.accounts] == ["small", "main"] and found.errors == ()


def test_params_without_a_strategy_are_the_default_strategys(tmp_path: Path) -> None:
    defaults = RunParams(strategy="ob_example:Leaders")
    found = read_entries(tmp_path, {**SMALL, "strategy_params": {"top_k": 8}}, defaults=defaults)
    assert found.errors == () and found.accounts[0].run_params() == {"strategy_params": {"top_k": 8}}
    momentum = refused(tmp_path, {**SMALL, "strategy_params": {"top_k": 8}})  # the default strategy's own
    assert "'strategy_params': invalid momentum_rotation params: top_k: Input should be less than or equal to 6" \
        in momentum


def test_nullable_ceilings_take_null(tmp_path: Path) -> None:
    found = read_entries(tmp_path, {**SMALL, "max_order_notional": None, "price_collar": None})
    assert found.errors == () and found.accounts[0].price_collar is None
    assert {"max_order_notional", "price_collar"} <= found.accounts[0].model_fields_set


# -- accounts against one another --------------------------------------------------------------------------


def test_a_duplicate_name_refuses_every_account_of_that_name(tmp_path: Path) -> None:
    found = read_entries(tmp_path, MAIN, SMALL, {"name": "main", "conn_id": "alpaca_secret"})
    assert [a.name for a in found.accounts] == ["small"]
    assert [(e.name, e.message) for e in found.errors] == [
        ("main", "account 'main' (#1): 'name': 'main' is also the name of account 'main' (#3) (each of them "
                 "refused: which one the name means cannot be told)"),
        ("main", "account 'main' (#3): 'name': 'main' is also the name of account 'main' (#1) (each of them "
                 "refused: which one the name means cannot be told)"),
    ]


@pytest.mark.parametrize("other", ["alpaca_secret", "alpaca_secret_too"])
def test_two_accounts_on_one_key_and_trading_url_are_both_refused(tmp_path: Path, other: str) -> None:
    found = read_entries(tmp_path, {"name": "one", "conn_id": "alpaca_secret"}, MAIN,
                         {"name": "two", "conn_id": other})
    assert [a.name for a in found.accounts] == ["main"]
    one, two = found.errors
    assert (one.name, two.name) == ("one", "two")
    assert "account 'one' (#1): 'conn_id': connection 'alpaca_secret' holds the key id of account 'two' (#3) on " \
           "the same trading URL (Alpaca allows one stream connection per key" in str(one)
    assert f"'conn_id': connection {other!r} holds the key id of account 'one' (#1)" in str(two)
    assert SECRET_KEY_ID not in str(one) + str(two) + repr(found)


def test_one_key_on_two_trading_urls_is_accepted(tmp_path: Path) -> None:
    found = read_entries(tmp_path, {"name": "one", "conn_id": "alpaca_secret"},
                         {"name": "two", "conn_id": "alpaca_secret_sim"})
    assert [a.name for a in found.accounts] == ["one", "two"] and found.errors == ()


def test_a_failing_lookup_refuses_the_account_without_its_message(tmp_path: Path) -> None:
    def lookup(conn_id: str) -> tuple[str, str] | None:
        if conn_id == "alpaca_small":
            raise RuntimeError(f"cannot parse https://{SECRET_KEY_ID}:hunter22@host")
        return CONNECTIONS.get(conn_id)

    message = refused(tmp_path, SMALL, lookup=lookup)
    assert "'conn_id': connection 'alpaca_small' cannot be read (RuntimeError)" in message
    assert SECRET_KEY_ID not in message and "hunter22" not in message


def test_every_problem_of_an_account_is_in_its_one_error(tmp_path: Path) -> None:
    message = refused(tmp_path, {"name": "Bad", "conn_id": "alpaca_nowhere", "bogus": 1})
    assert "'name': 'Bad' is not" in message and "'bogus': unknown key" in message
    assert "no Airflow connection 'alpaca_nowhere'" in message


# -- the Airflow connection --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "url"),
    [
        ({}, PAPER),
        ({"paper": True}, PAPER),
        ({"paper": "False "}, "https://api.alpaca.markets"),
        ({"paper": False}, "https://api.alpaca.markets"),
        ({"trading_url": "https://example.test/x"}, "https://example.test/x"),
        ({"simulator_url": "http://127.0.0.1:5055"}, "http://127.0.0.1:5055"),
    ],
)
def test_the_default_lookup_reads_the_airflow_connection(monkeypatch: pytest.MonkeyPatch, extra: dict[str, Any],
                                                         url: str) -> None:
    import json

    conn = {"conn_type": "alpaca", "login": "PKLOOKUP", "password": "a-secret-value", "extra": extra}
    monkeypatch.setenv("AIRFLOW_CONN_OB_ACCOUNTS_TEST", json.dumps(conn))
    assert airflow_connection("ob_accounts_test") == ("PKLOOKUP", url)
    assert airflow_connection("ob_accounts_not_there") is None


def test_the_module_docstrings_example_is_a_valid_file(tmp_path: Path) -> None:
    import textwrap

    import openbell.accounts

    doc = openbell.accounts.__doc__ or ""
    example = textwrap.dedent(doc.split("::\n\n", 1)[1].split("\n\n", 1)[0])
    found = read(tmp_path, example)
    assert [a.name for a in found.accounts] == ["main", "small"] and found.errors == ()


def test_the_run_defaults_come_from_the_same_environment(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("accounts:\n  - {name: small, conn_id: alpaca_small, "
                                     "strategy_params: {top_k: 8}}\n")
    environ = {ACCOUNTS_ENV: str(tmp_path / "a.yaml"), "OPENBELL_RUN_DEFAULTS": '{"strategy": "ob_example:Leaders"}'}
    found = load_accounts(environ, lookup=CONNECTIONS.get)
    assert found is not None and found.errors == () and [a.name for a in found.accounts] == ["small"]
    with pytest.raises(InvalidRunParams, match="OPENBELL_RUN_DEFAULTS"):
        load_accounts({**environ, "OPENBELL_RUN_DEFAULTS": "{"}, lookup=CONNECTIONS.get)


@pytest.mark.parametrize("account", [None, "alpha", "b_2"])
def test_an_accounts_dag_ids_name_it(account: str | None) -> None:
    suffix = "" if account is None else f"_{account}"
    assert (day_dag_id(account), control_dag_id(account)) == (f"trading_day{suffix}", f"trading_control{suffix}")
    assert account_of_dag(day_dag_id(account)) == account_of_dag(control_dag_id(account)) == account
    assert account_of_dag("example_dag") is None  # a DAG of one's own: the default account


def test_a_rehearsals_accounts_file_is_written_where_no_directory_was_yet(tmp_path: Path) -> None:
    """``make bench`` (accounts_bench) rehearses into a home it has not made yet: the file is written there and reads
    back as the accounts it names, each on its rehearsal connection."""
    from openbell.runtime.accounts_rehearsal import conn_id, write_accounts_file

    path = write_accounts_file(tmp_path / "n2" / "accounts.yaml", {"acct1": {}, "acct2": {"universe": ["SSO"]}})
    lookup = {conn_id(n): ("PK" + n.upper(), PAPER) for n in ("acct1", "acct2")}.get
    found = read_accounts(path, lookup, RunParams())
    assert found.errors == () and [(a.name, a.conn_id) for a in found.accounts] == [
        ("acct1", "alpaca_acct1"), ("acct2", "alpaca_acct2")]
    assert found.accounts[1].universe == ["SSO"]
