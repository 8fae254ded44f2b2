"""The order policy per kind of order: fractional sizing for fractionable assets, marketable limits with a
collar, notional buys of fractionable assets (dollars cut to cents, sells by quantity), short sales (whole
shares, never through zero in one order, only of shortable easy-to-borrow assets), and the run parameters that
choose them, each bad value refused naming the field."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import pytest

from openbell.params import InvalidRunParams, RunParams
from openbell.policy import OrderIntent, OrderLimits, OrderPolicy, fraction_down, limit_price, notional_buy
from openbell.strategy.risk import RiskGate, RiskLimits

PRICES = {"AAA": 33.0, "BBB": 7.0, "CCC": 0.5}


def test_fractionable_symbols_are_sized_in_fractions_the_others_in_whole_shares() -> None:
    policy = OrderPolicy(min_notional=1.0, fractional=frozenset({"AAA"}))
    d = policy.decide({"AAA": 0.5, "BBB": 0.5}, 1000.0, PRICES, {})
    qty = {i.symbol: i.qty for i in d.intents}
    assert qty["AAA"] == fraction_down(500 / 33) == 15.151515151 and qty["BBB"] == 71.0
    assert all(i.limit_price is None for i in d.intents)
    whole = OrderPolicy(min_notional=1.0).decide({"AAA": 0.5}, 1000.0, PRICES, {})
    assert [i.qty for i in whole.intents] == [15.0]


def test_a_fractional_position_is_closed_in_full_and_a_short_is_whole_shares() -> None:
    policy = OrderPolicy(min_notional=1.0, fractional=frozenset({"AAA"}))
    close = policy.decide({"AAA": 0.0}, 1000.0, PRICES, {"AAA": 2.345678912})
    assert close.intents == (OrderIntent("AAA", "sell", 2.345678912, 0.0),)
    short = policy.decide({"AAA": -0.5}, 1000.0, PRICES, {})
    assert short.intents == (OrderIntent("AAA", "sell", 15.0, -0.5),)


def test_a_position_is_never_carried_through_zero_by_one_order() -> None:
    policy = OrderPolicy(min_notional=1.0)
    flip = policy.decide({"BBB": -0.5, "AAA": 0.5}, 1000.0, PRICES, {"BBB": 10.0, "AAA": -4.0})
    assert set(flip.intents) == {OrderIntent("BBB", "sell", 10.0, -0.5), OrderIntent("AAA", "buy", 4.0, 0.5)}
    then = policy.decide({"BBB": -0.5}, 1000.0, PRICES, {"BBB": 0.0})  # the next decision opens the short
    assert then.intents == (OrderIntent("BBB", "sell", 71.0, -0.5),)


def test_limit_orders_reach_the_collar_beyond_the_decided_price_in_the_brokers_increments() -> None:
    policy = OrderPolicy(min_notional=1.0, order_type="limit", limit_collar=0.002)
    d = policy.decide({"AAA": 0.5, "BBB": 0.0, "CCC": 0.2}, 1000.0, PRICES, {"BBB": 20.0})
    by = {i.symbol: i for i in d.intents}
    assert by["AAA"].limit_price == 33.07 and by["AAA"].side == "buy"  # 33.066 -> whole cents
    assert by["BBB"].limit_price == 6.99 and by["BBB"].side == "sell"  # 6.986
    assert by["CCC"].limit_price == 0.501  # under $1: 4 decimals
    assert limit_price("sell", 0.5, 0.002) == 0.499 and limit_price("buy", 100.0, 0.01) == 101.0
    assert policy.close_all({"AAA": 3.5, "BBB": -2.0}) == (OrderIntent("AAA", "sell", 3.5, 0.0),
                                                            OrderIntent("BBB", "buy", 2.0, 0.0))


def test_limit_buys_fit_the_buying_power_at_their_limit_price() -> None:
    policy = OrderPolicy(min_notional=1.0, order_type="limit", fractional=frozenset({"AAA"}))
    buys = (OrderIntent("AAA", "buy", 10.0, 0.5, limit_price=40.0),)
    fitted, notes = policy.fit(buys, {"AAA": 33.0}, 200.0)
    assert fitted[0].qty == 5.0 and fitted[0].limit_price == 40.0 and notes


def test_notional_buys_are_for_fractionable_symbols_in_dollars_cut_to_cents() -> None:
    policy = OrderPolicy(min_notional=1.0, fractional=frozenset({"AAA"}), order_type="notional")
    d = policy.decide({"AAA": 0.5, "BBB": 0.5}, 1000.0, PRICES, {})
    by = {i.symbol: i for i in d.intents}
    # 15.151515151 shares x 33 = 499.99999998: cut to 499.99, not rounded to 500.00
    assert by["AAA"].notional == 499.99 and by["AAA"].limit_price is None
    assert by["AAA"].qty == fraction_down(499.99 / 33) == 15.151212121  # the shares the dollars buy
    assert by["BBB"] == OrderIntent("BBB", "buy", 71.0, 0.5)  # not fractionable: whole shares by quantity
    assert notional_buy(2.0, 10.005) == (20.01, 2.0) and notional_buy(0.0999, 10.0) is None  # under $1


def test_notional_is_for_buys_only_sells_covers_and_the_liquidation_go_by_quantity() -> None:
    policy = OrderPolicy(min_notional=1.0, fractional=frozenset({"AAA"}), order_type="notional")
    reduce = policy.decide({"AAA": 0.1}, 1000.0, PRICES, {"AAA": 20.0})
    assert reduce.intents == (OrderIntent("AAA", "sell", 20.0 - fraction_down(100 / 33), 0.1),)
    close = policy.decide({"AAA": 0.0}, 1000.0, PRICES, {"AAA": 2.345678912})
    assert close.intents == (OrderIntent("AAA", "sell", 2.345678912, 0.0),)  # exact, the whole position
    cover = policy.decide({"AAA": 0.5}, 1000.0, PRICES, {"AAA": -4.0})  # a short is bought back first
    assert cover.intents == (OrderIntent("AAA", "buy", 4.0, 0.5),)
    assert policy.decide({"AAA": -0.5}, 1000.0, PRICES, {}).intents == (OrderIntent("AAA", "sell", 15.0, -0.5),)
    assert all(i.notional is None for i in policy.close_all({"AAA": 2.5, "BBB": -3.0}))
    adds = policy.decide({"AAA": 0.5}, 1000.0, PRICES, {"AAA": 5.0}).intents  # adding to a long: dollars
    assert adds[0].side == "buy" and adds[0].notional == 334.99  # (15.151515151 - 5) x 33 = 334.99999998
    whole = OrderPolicy(min_notional=1.0, order_type="notional").decide({"AAA": 0.5}, 1000.0, PRICES, {})
    assert whole.intents == (OrderIntent("AAA", "buy", 15.0, 0.5),)  # no fractionable symbol: by quantity


def test_a_notional_buy_under_a_dollar_is_dropped_as_one_under_min_notional() -> None:
    policy = OrderPolicy(min_notional=0.0, fractional=frozenset({"CCC"}), order_type="notional")
    assert policy.decide({"CCC": 0.0009}, 1000.0, PRICES, {}).intents == ()  # 1.8 shares x 0.5 = $0.90
    market = OrderPolicy(min_notional=0.0, fractional=frozenset({"CCC"}))
    assert market.decide({"CCC": 0.0009}, 1000.0, PRICES, {}).intents == (OrderIntent("CCC", "buy", 1.8, 0.0009),)
    buys = (OrderIntent("AAA", "buy", 10.0, 0.5, notional=330.0), OrderIntent("CCC", "buy", 4.0, 0.1, notional=2.0))
    policy = replace(policy, fractional=frozenset({"AAA", "CCC"}))
    fitted, notes = policy.fit(buys, PRICES, 166.0)  # half: AAA to 165.00, CCC to $1.00
    assert [(i.symbol, i.notional, i.qty) for i in fitted] == [("AAA", 165.0, 5.0), ("CCC", 1.0, 2.0)]
    fitted, notes = policy.fit(buys, PRICES, 100.0)  # x 0.3012: AAA 3.012048192 x 33 = 99.3976, CCC $0.60
    assert [(i.symbol, i.notional, i.qty) for i in fitted] == [("AAA", 99.39, fraction_down(99.39 / 33))]
    assert notes[1] == "CCC: buy of 4 dropped to fit the buying power (100.00)"


def test_the_pre_trade_limits_weigh_a_notional_order_by_its_dollars() -> None:
    intent = OrderIntent("AAA", "buy", 15.151212121, 0.5, notional=499.99)
    refused = OrderLimits(max_order_notional=499.98).breach(intent, 40.0, None, 0.0, 0, 0)
    assert refused is not None and (refused.limit, refused.value) == ("max_order_notional", 499.99)
    assert OrderLimits(max_order_notional=499.99).breach(intent, 40.0, None, 0.0, 0, 0) is None  # 606 at 40


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [({"order_type": "stop"}, "order_type"), ({"limit_collar": 0}, "limit_collar"),
     ({"limit_collar": math.nan}, "limit_collar"), ({"limit_collar": 0.2}, "limit_collar"),
     ({"fractional": {"AAA"}}, "fractional")],
)
def test_bad_policy_settings_are_refused(kwargs: dict[str, Any], says: str) -> None:
    with pytest.raises(ValueError, match=says):
        OrderPolicy(**kwargs)


def test_short_weights_pass_only_when_allowed_and_the_asset_is_shortable_and_easy_to_borrow() -> None:
    weights = {"AAA": -0.2, "BBB": -0.2, "CCC": 0.1}
    assert RiskGate(RiskLimits(), universe=PRICES).apply(weights, 1000.0)[0] == {"AAA": 0, "BBB": 0, "CCC": 0.1}
    gate = RiskGate(RiskLimits(allow_short=True, shortable=frozenset({"AAA"})), universe=PRICES)
    kept, notes = gate.apply(weights, 1000.0)
    assert kept == {"AAA": -0.2, "BBB": 0.0, "CCC": 0.1}
    assert notes == ["BBB: short weight -0.2 set to 0, the asset is not shortable and easy to borrow"]
    assert RiskGate(RiskLimits(allow_short=True), universe=PRICES).apply(weights, 1000.0)[0]["BBB"] == -0.2


def test_the_run_parameters_choose_the_kinds_and_default_to_todays_orders() -> None:
    p = RunParams()
    assert (p.fractional, p.order_type, p.limit_collar, p.allow_short) == (False, "market", 0.002, False)
    q = RunParams.from_mapping({"fractional": True, "order_type": "limit", "limit_collar": 0.01, "allow_short": True})
    assert (q.fractional, q.order_type, q.limit_collar, q.allow_short) == (True, "limit", 0.01, True)
    assert RunParams.from_mapping({"fractional": True, "order_type": "notional"}).order_type == "notional"


def test_notional_orders_need_fractional_and_the_refusal_names_both_fields() -> None:
    with pytest.raises(InvalidRunParams) as info:
        RunParams.from_mapping({"order_type": "notional"})
    assert str(info.value) == ("run parameter 'order_type': 'notional' needs fractional true (notional orders buy "
                               "fractions of a share), got fractional false")
    with pytest.raises(InvalidRunParams, match="'order_type': 'notional' needs fractional true"):
        RunParams(order_type="notional", fractional=False)


@pytest.mark.parametrize(
    ("values", "field"),
    [({"fractional": "yes"}, "fractional"), ({"fractional": 1}, "fractional"),
     ({"order_type": "stop"}, "order_type"), ({"order_type": None}, "order_type"),
     ({"limit_collar": 0}, "limit_collar"), ({"limit_collar": 0.5}, "limit_collar"),
     ({"limit_collar": math.nan}, "limit_collar"), ({"limit_collar": "0.01"}, "limit_collar"),
     ({"allow_short": "true"}, "allow_short"), ({"allow_short": None}, "allow_short")],
)
def test_each_bad_kind_parameter_is_refused_naming_the_field(values: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidRunParams) as info:
        RunParams.from_mapping(values)
    assert str(info.value).startswith(f"run parameter '{field}': "), info.value
