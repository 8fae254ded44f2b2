"""Deterministic client order ids (pure logic)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import cast

import pytest

from openbell.broker import OrderKey, client_order_id, is_ours, parse_client_order_id
from openbell.broker.ids import is_resized, resized_order_id
from openbell.broker.reconcile import session_orders
from openbell.broker.rows import order_row
from openbell.ports import BrokerPort, OrderReport


def test_client_order_id_is_deterministic_and_parses_back() -> None:
    a = client_order_id(date(2025, 11, 20), 42, "tqqq")
    assert a == "ob-20251120-000042-TQQQ"
    assert a == client_order_id(date(2025, 11, 20), 42, "TQQQ")
    assert len(a) <= 128
    key = parse_client_order_id(a)
    assert key is not None
    assert (key.session_date, key.decision_seq, key.symbol) == (date(2025, 11, 20), 42, "TQQQ")
    assert client_order_id(date(2025, 11, 20), 43, "TQQQ") != a
    assert client_order_id(date(2025, 11, 21), 42, "TQQQ") != a


def test_foreign_ids_are_not_ours() -> None:
    assert parse_client_order_id("4f3c2b1a-manual") is None
    assert not is_ours("ob-2025112-000001-TQQQ")
    assert is_ours("ob-20251120-1234567-BRK.B", date(2025, 11, 20))
    assert not is_ours("ob-20251120-000001-TQQQ", date(2025, 11, 21))


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="decision_seq"):
        client_order_id(date(2025, 11, 20), -1, "TQQQ")
    with pytest.raises(ValueError, match="symbol"):
        client_order_id(date(2025, 11, 20), 1, " ")


# -- accounts: a named account's ids carry its name; the default account's are the ones above ----------------

DAY = date(2025, 11, 20)


def test_the_default_accounts_ids_are_unchanged_byte_for_byte() -> None:
    assert client_order_id(DAY, 42, "TQQQ") == client_order_id(DAY, 42, "TQQQ", None) == "ob-20251120-000042-TQQQ"
    assert resized_order_id("ob-20251120-000042-TQQQ") == "ob-20251120-000042-TQQQ-r"
    assert parse_client_order_id("ob-20251120-000042-TQQQ") == OrderKey(DAY, 42, "TQQQ", None)


@pytest.mark.parametrize("account", [None, "alpha", "a", "small_2", "a" + "b" * 19])
@pytest.mark.parametrize("symbol", ["TQQQ", "BRK.B", "BF-B"])
def test_both_forms_round_trip_with_their_resize(account: str | None, symbol: str) -> None:
    coid = client_order_id(DAY, 7, symbol, account)
    assert coid.startswith("ob-" if account is None else f"ob-{account}-20251120-")
    assert parse_client_order_id(coid) == OrderKey(DAY, 7, symbol, account)
    resized = resized_order_id(coid)
    assert resized == coid + "-r" and is_resized(resized) and not is_resized(coid)
    assert parse_client_order_id(resized) == OrderKey(DAY, 7, symbol, account)
    with pytest.raises(ValueError, match="no resized id"):
        resized_order_id(resized)


def test_no_two_accounts_share_an_id_for_the_same_session_decision_and_symbol() -> None:
    accounts = [None, "alpha", "beta", "alpha2", "a_b"]
    ids = {client_order_id(DAY, 42, "TQQQ", a) for a in accounts}
    ids |= {resized_order_id(client_order_id(DAY, 42, "TQQQ", a)) for a in accounts}
    assert len(ids) == 2 * len(accounts)
    assert {parse_client_order_id(i).account for i in ids} == set(accounts)  # type: ignore[union-attr]


def test_the_longest_id_stays_well_under_alpacas_128_characters() -> None:
    account, symbol = "a" * 20, "B" * 20
    longest = resized_order_id(client_order_id(DAY, 999_999, symbol, account))
    assert len(longest) == 62
    assert parse_client_order_id(longest) == OrderKey(DAY, 999_999, symbol, account)
    assert len(resized_order_id(client_order_id(DAY, 2**63 - 1, symbol, account))) < 100  # any sequence at all


@pytest.mark.parametrize("name", ["", "Alpha", "1alpha", "_alpha", "al-pha", "al pha", "a" * 21, "alpha\n", "é"])
def test_a_name_that_is_no_accounts_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match=r"not an account name: .*\[a-z\]\[a-z0-9_\]\*, at most 20 characters"):
        client_order_id(DAY, 1, "TQQQ", name)


@pytest.mark.parametrize("value", [
    "ob-Alpha-20251120-000001-TQQQ",  # no account name has a capital
    "ob-1alpha-20251120-000001-TQQQ",
    "ob-alpha-2025112-000001-TQQQ",
    "ob-alpha--20251120-000001-TQQQ",
    "ob-" + "a" * 21 + "-20251120-000001-TQQQ",
    "ob-alpha-20251120-000001-TQQQ\n",
])
def test_ids_no_account_could_have_built_are_not_openbells(value: str) -> None:
    assert parse_client_order_id(value) is None
    assert not any(is_ours(value, account=a) for a in (None, "alpha", "alpha-20251120"))


def test_an_id_is_ours_only_for_its_own_account() -> None:
    default, alpha, beta = (client_order_id(DAY, 1, "TQQQ", a) for a in (None, "alpha", "beta"))
    assert is_ours(default) and is_ours(default, DAY) and is_ours(default, account=None)
    assert not is_ours(alpha) and not is_ours(alpha, DAY)  # the default account's view: another account's id
    assert is_ours(alpha, DAY, account="alpha") and is_ours(resized_order_id(alpha), account="alpha")
    assert not is_ours(alpha, date(2025, 11, 21), account="alpha")
    assert not is_ours(default, account="alpha") and not is_ours(beta, account="alpha")
    assert not is_ours("4f3c2b1a-manual", account="alpha")


class _Broker:
    """A broker's order listing, as the broker layer asks it."""

    def __init__(self, orders: list[OrderReport]) -> None:
        self._orders = orders

    def orders(self, scope: str, after: datetime | None = None) -> list[OrderReport]:
        return list(self._orders)


def _report(coid: str) -> OrderReport:
    return OrderReport(coid, f"b-{coid}", "TQQQ", "buy", "new", datetime(2025, 11, 20, 15, tzinfo=UTC), qty=1.0)


def test_an_accounts_session_orders_are_its_own_and_the_others_are_foreign() -> None:
    ids = [client_order_id(DAY, 3, "TQQQ", a) for a in (None, "alpha", "beta")] + ["manual-1"]
    broker = cast(BrokerPort, _Broker([_report(c) for c in ids]))
    assert [o.client_order_id for o in session_orders(broker, DAY)] == [ids[0]]
    assert [o.client_order_id for o in session_orders(broker, DAY, "alpha")] == [ids[1]]
    assert session_orders(broker, DAY, "gamma") == []


def test_only_the_accounts_own_order_row_has_a_decision() -> None:
    alpha = _report(client_order_id(DAY, 3, "TQQQ", "alpha"))
    assert order_row(alpha, DAY, "strategy").decision_seq == 3  # recorded as the account's own
    # the same id in another account's state: not its decision (origin liquidation, as a trade update says)
    assert order_row(alpha, DAY, "liquidation").decision_seq is None
    assert order_row(_report("manual-1"), DAY, "strategy").decision_seq is None
