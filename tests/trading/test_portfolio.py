"""The live loop's account view: no order against a working one, fills counted once."""

from __future__ import annotations

from openbell.trading.portfolio import Fill, OrderIntent, Portfolio


def _portfolio() -> Portfolio:
    return Portfolio(cash=10_000.0, prices={"SSO": 100.0, "TQQQ": 50.0})


def test_working_orders_two_decisions_old_are_stale() -> None:
    p = Portfolio()
    p.add_working("a", OrderIntent("SSO", "buy", 1, 0.1), 3)
    p.add_working("b", OrderIntent("TQQQ", "buy", 1, 0.1), 4)
    p.adopt_working("c", "SDS", "sell", 5, 0, 1)
    assert p.stale(5) == ["a", "c"] and p.stale(4) == ["c"]
    p.order_done("a")
    assert p.stale(6) == ["b", "c"]


def test_no_sell_while_a_buy_is_working_in_the_symbol() -> None:
    p = _portfolio()
    p.add_working("buy-sso", OrderIntent("SSO", "buy", 30, 0.3), 0)
    deferred: list[str] = []
    # the strategy now wants SSO flat and TQQQ bought: only TQQQ may go out
    intents = p.intents({"SSO": 0.0, "TQQQ": 0.5}, ["SSO", "TQQQ"], 100.0, deferred)
    assert [(i.symbol, i.side) for i in intents] == [("TQQQ", "buy")]
    assert deferred == ["SSO"]
    # more of the same side is fine, and once the buy is done the sell goes out
    assert [(i.symbol, i.side, i.qty) for i in p.intents({"SSO": 0.5}, ["SSO"], 100.0)] == [("SSO", "buy", 20.0)]
    p.on_fill(Fill("e1", "buy-sso", "SSO", "buy", 30, 100.0, position_qty=30, cum_filled=30))
    assert [(i.symbol, i.side, i.qty) for i in p.intents({"SSO": 0.0}, ["SSO"], 100.0)] == [("SSO", "sell", 30.0)]


def test_a_fill_recovered_by_polling_is_not_applied_again_when_replayed() -> None:
    p = _portfolio()
    p.add_working("b", OrderIntent("SSO", "buy", 10, 0.1), 0)
    assert p.on_fill(Fill("e1", "b", "SSO", "buy", 4, 100.0, remaining=6, final=False, cum_filled=4))
    assert p.recover("b", "SSO", "buy", 10, 100.0) == 6  # the broker says 10 filled; 6 were missed
    assert not p.on_fill(Fill("e2", "b", "SSO", "buy", 6, 100.0, cum_filled=10))  # the replay of the 6
    assert not p.on_fill(Fill("e1", "b", "SSO", "buy", 4, 100.0, remaining=6, final=False, cum_filled=4))
    assert p.positions == {"SSO": 10} and p.cash == 9_000.0
    assert p.recover("b", "SSO", "buy", 10, 100.0) == 0


def test_a_notional_buy_works_for_its_estimate_less_its_fills_until_it_is_final() -> None:
    p = _portfolio()
    p.add_working("n", OrderIntent("SSO", "buy", 2.5, 0.025, notional=250.0), 0)
    assert p.expected("SSO") == 2.5
    # the broker says no qty for a notional order: what it still has to fill is not known
    assert p.on_fill(Fill("e1", "n", "SSO", "buy", 1.0, 99.0, remaining=None, final=False, cum_filled=1.0))
    assert p.working["n"].signed_qty == 1.5 and p.expected("SSO") == 2.5
    assert p.on_fill(Fill("e2", "n", "SSO", "buy", 1.6, 99.0, remaining=None, final=False, cum_filled=2.6))
    assert 0 < p.working["n"].signed_qty < 1e-8 and p.working["n"].side == "buy"  # more than expected: still working
    assert p.working_against("SSO", "sell")
    assert p.on_fill(Fill("e3", "n", "SSO", "buy", 0.01, 99.0, remaining=None, final=True, cum_filled=2.61))
    assert "n" not in p.working and p.positions == {"SSO": 2.61}
