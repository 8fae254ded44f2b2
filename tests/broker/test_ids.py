"""Deterministic client order ids (pure logic)."""

from __future__ import annotations

from datetime import date

import pytest

from openbell.broker import client_order_id, is_ours, parse_client_order_id


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
