"""The order policy: the live loop's rules (whole shares, min_notional, sells first, working orders)."""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Mapping

import pytest

from openbell.policy import Decision, OrderIntent, OrderLimits, OrderPolicy, Refused, reducing_only, working_sides
from openbell.trading.portfolio import Portfolio, Working

U = ["ERX", "FAS", "SSO", "TNA", "TQQQ"]


def reference(p: Portfolio, weights: Mapping[str, float], universe: Iterable[str], min_notional: float,
              deferred: list[str] | None = None) -> list[OrderIntent]:
    """The live loop's rules as they were written before the policy existed, plus the one added with short
    sales (a position is closed before it is opened on the other side: the broker refuses a sell of more than
    is held, a buy of more than is short): the oracle it must match."""
    equity = p.equity()
    out: list[OrderIntent] = []
    for symbol in sorted(universe):
        price = p.prices.get(symbol)
        if not price or price <= 0 or not math.isfinite(price):
            continue
        weight = float(weights.get(symbol, 0.0))
        target = math.trunc(weight * equity / price) if equity > 0 else 0
        if target * p.expected(symbol) < 0:
            target = 0
        diff = target - p.expected(symbol)
        if abs(diff) * price < min_notional:
            continue
        qty = math.floor(abs(diff))
        if qty <= 0:
            continue
        side = "buy" if diff > 0 else "sell"
        if p.working_against(symbol, side):
            if deferred is not None:
                deferred.append(symbol)
            continue
        out.append(OrderIntent(symbol, side, float(qty), weight))
    out.sort(key=lambda o: o.side != "sell")
    return out


def _random_portfolio(rng: random.Random) -> Portfolio:
    p = Portfolio(cash=rng.choice([100_000.0, 2_500.0, 0.0, -50_000.0, rng.uniform(-1e4, 1e6)]))
    for s in [*U, "AAPL"]:
        if rng.random() < 0.85:
            p.prices[s] = rng.choice([rng.uniform(5, 400), 0.0, -1.0, math.nan, math.inf, 100.0])
        if rng.random() < 0.5:
            p.positions[s] = float(rng.choice([rng.randint(-50, 400), rng.uniform(-3, 3), 0]))
    for i in range(rng.randint(0, 4)):
        p.working[f"w{i}"] = Working(rng.choice(U), float(rng.choice([rng.randint(-60, 60), 0.5, -0.25])))
    return p


def test_portfolio_intents_through_the_policy_keep_the_live_rules_on_random_accounts():
    rng = random.Random(5)
    seen = {"orders": 0, "deferred": 0, "sells_before_buys": 0, "errors": 0}
    for _ in range(3000):
        p = _random_portfolio(rng)
        weights: dict[str, float] = {s: rng.choice([0.0, rng.uniform(0, 0.6), rng.uniform(-0.3, 0)]) for s in U}
        if rng.random() < 0.3:
            weights["AAPL"] = 0.2  # outside the universe: no order
        universe = rng.sample(U, rng.randint(1, len(U)))
        min_notional = rng.choice([0.0, 1.0, 100.0, 5_000.0])
        live_deferred: list[str] = []
        policy_deferred: list[str] = []
        try:
            live = reference(p, weights, universe, min_notional, live_deferred)
        except (ValueError, OverflowError) as exc:  # a non-finite equity (an infinite price held)
            with pytest.raises(type(exc)):
                p.intents(weights, universe, min_notional, policy_deferred)
            seen["errors"] += 1
            continue
        via = p.intents(weights, universe, min_notional, policy_deferred)
        assert [vars(o) for o in via] == [vars(o) for o in live]
        assert policy_deferred == live_deferred
        seen["orders"] += len(live)
        seen["deferred"] += len(live_deferred)
        sides = [o.side for o in live]
        seen["sells_before_buys"] += "sell" in sides and "buy" in sides
    assert min(seen.values()) > 20, seen  # every rule (and failure) was exercised


def _policy_args(**kw):
    args = {
        "weights": {"SSO": 0.3, "TQQQ": 0.0, "TNA": 0.2},
        "equity": 10_000.0,
        "prices": {"SSO": 100.0, "TQQQ": 50.0, "TNA": 30.0},
        "holdings": {"TQQQ": 10.0, "TNA": 60.0},
    }
    return args | kw


def test_whole_shares_min_notional_and_sells_first():
    d = OrderPolicy(min_notional=100.0).decide(**_policy_args())
    # SSO: trunc(0.3 * 10000 / 100) = 30 to buy; TQQQ: sell 10; TNA: target trunc(66.67) = 66, +6 is $180
    assert [(o.symbol, o.side, o.qty, o.target_weight) for o in d.intents] == [
        ("TQQQ", "sell", 10.0, 0.0), ("SSO", "buy", 30.0, 0.3), ("TNA", "buy", 6.0, 0.2)]
    assert d.deferred == () and d.held == () and d.notes == ()
    d = OrderPolicy(min_notional=200.0).decide(**_policy_args())
    assert [o.symbol for o in d.intents] == ["TQQQ", "SSO"]  # $180 of TNA is under the minimum
    d = OrderPolicy(min_notional=0.0, sells_first=False).decide(**_policy_args())
    assert [o.symbol for o in d.intents] == ["SSO", "TNA", "TQQQ"]


def test_fractional_shares():
    d = OrderPolicy(min_notional=0.0, whole_shares=False).decide(**_policy_args())
    tna = next(o for o in d.intents if o.symbol == "TNA")
    assert tna.qty == pytest.approx(0.2 * 10_000 / 30 - 60)


def test_the_rebalance_band_skips_changes_under_its_share_of_the_target_and_never_a_close():
    args = _policy_args(weights={"SSO": 0.3, "TNA": 0.2}, holdings={"SSO": 28.0, "TNA": 60.0})
    # SSO: 28 of a 30-share target (change 2, 6.7% of it); TNA: 60 of 66 (change 6, 9.1%)
    assert len(OrderPolicy(min_notional=100.0).decide(**args).intents) == 2
    assert OrderPolicy(min_notional=100.0, band=0.1).decide(**args).intents == ()
    d = OrderPolicy(min_notional=100.0, band=0.08).decide(**args)
    assert [(o.symbol, o.qty) for o in d.intents] == [("TNA", 6.0)]
    # a close goes whatever the band: the target is 0
    closing = _policy_args(weights={"SSO": 0.0}, holdings={"SSO": 28.0})
    d = OrderPolicy(min_notional=100.0, band=0.99).decide(**closing)
    assert [(o.symbol, o.side, o.qty) for o in d.intents] == [("SSO", "sell", 28.0)]


def test_an_opposite_working_order_defers_the_symbol_and_held_orders_say_why():
    working = working_sides([("TQQQ", 5.0), ("SSO", 3.0)])
    assert working == {"TQQQ": {"buy"}, "SSO": {"buy"}}
    d = OrderPolicy().decide(**_policy_args(), working=working)
    assert d.deferred == ("TQQQ",)  # a sell against a working buy; SSO buys more: fine
    assert d.notes == ("TQQQ: order deferred, an opposite-side order is working",)
    held = OrderPolicy().decide(**_policy_args(), working=working, hold="the session is liquidating")
    assert held.intents == () and held.held == d.intents and held.deferred == d.deferred
    assert held.notes[-1] == "2 order(s) held: the session is liquidating"
    assert Decision().hold("x") == Decision()


def test_prices_that_cannot_be_traded_and_an_empty_account():
    args = _policy_args(prices={"SSO": math.nan, "TQQQ": 0.0, "TNA": -3.0})
    assert OrderPolicy().decide(**args).intents == ()
    d = OrderPolicy().decide(**_policy_args(equity=0.0))
    assert [(o.symbol, o.side, o.qty) for o in d.intents] == [("TNA", "sell", 60.0), ("TQQQ", "sell", 10.0)]


def test_close_all_closes_everything_whatever_its_size():
    out = OrderPolicy(min_notional=1_000.0).close_all({"SSO": 0.5, "TQQQ": -3.0, "TNA": 0.0, "ERX": 2.0})
    assert [(o.symbol, o.side, o.qty, o.target_weight) for o in out] == [
        ("ERX", "sell", 2.0, 0.0), ("SSO", "sell", 0.5, 0.0), ("TQQQ", "buy", 3.0, 0.0)]


@pytest.mark.parametrize("kwargs", [{"min_notional": -1.0}, {"min_notional": math.nan}, {"band": 1.5},
                                    {"band": math.inf}, {"whole_shares": 1}, {"sells_first": "yes"}])
def test_bad_settings_are_refused(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        OrderPolicy(**kwargs)


# -- pre-trade limits ------------------------------------------------------------------------------------


def _limited(intents, prices=None, last=None, holdings=None, *, minute=0, day=0, **limits):
    return OrderLimits(**limits).check(intents, prices or {"SSO": 100.0, "TQQQ": 50.0}, last or {}, holdings or {},
                                       minute=minute, day=day)


BUY_SSO = OrderIntent("SSO", "buy", 30.0, 0.3)  # $3000 at 100
SELL_TQQQ = OrderIntent("TQQQ", "sell", 10.0, 0.0)  # $500 at 50


def test_no_limit_passes_everything():
    assert not OrderLimits().active and OrderPolicy().limits == OrderLimits()
    assert _limited([SELL_TQQQ, BUY_SSO], day=10**9, minute=10**9) == ((SELL_TQQQ, BUY_SSO), ())


def test_the_order_notional_limit_refuses_a_larger_order_of_either_side():
    passed, refused = _limited([SELL_TQQQ, BUY_SSO], max_order_notional=2_999.0)
    assert passed == (SELL_TQQQ,)
    assert refused == (Refused(BUY_SSO, "max_order_notional", 3_000.0, 2_999.0),)
    assert refused[0].note == "SSO: buy of 30 refused, max_order_notional 3000 over 2999"
    assert _limited([BUY_SSO], max_order_notional=3_000.0) == ((BUY_SSO,), ())
    assert _limited([SELL_TQQQ], max_order_notional=499.0)[1][0].limit == "max_order_notional"


def test_the_position_limit_refuses_growing_past_it_and_never_a_reduction():
    cap = {"max_position_notional": 5_000.0}
    assert _limited([BUY_SSO], holdings={"SSO": 20.0}, **cap) == ((BUY_SSO,), ())  # 50 shares: $5000
    passed, refused = _limited([BUY_SSO], holdings={"SSO": 21.0}, **cap)
    assert passed == () and (refused[0].limit, refused[0].value) == ("max_position_notional", 5_100.0)
    sell = OrderIntent("SSO", "sell", 10.0, 0.0)
    assert _limited([sell], holdings={"SSO": 200.0}, **cap) == ((sell,), ())  # still over it, but smaller
    short = OrderIntent("SSO", "sell", 80.0, -0.3)  # from 20 long to 60 short: $6000
    assert _limited([short], holdings={"SSO": 20.0}, **cap)[1][0].value == 6_000.0
    # an order larger than the position cap is refused by it, a consistent setting
    assert _limited([BUY_SSO], max_order_notional=10_000.0, max_position_notional=1_000.0)[1][0].limit == (
        "max_position_notional")


def test_the_rate_limits_count_what_was_sent_and_what_passes():
    three = [SELL_TQQQ, BUY_SSO, OrderIntent("TNA", "buy", 5.0, 0.1)]
    prices = {"SSO": 100.0, "TQQQ": 50.0, "TNA": 30.0}
    passed, refused = _limited(three, prices, minute=1, max_orders_per_minute=2)
    assert passed == (SELL_TQQQ,) and [(r.intent.symbol, r.limit, r.value, r.bound) for r in refused] == [
        ("SSO", "max_orders_per_minute", 3, 2), ("TNA", "max_orders_per_minute", 3, 2)]
    passed, refused = _limited(three, prices, day=8, max_orders_per_day=10, max_orders_per_minute=5)
    assert passed == (SELL_TQQQ, BUY_SSO) and [(r.limit, r.value) for r in refused] == [("max_orders_per_day", 11)]
    # a refused order does not use up the rate: the next one may still go
    passed, _ = _limited(three, prices, max_orders_per_minute=2, max_order_notional=1_000.0)
    assert passed == (SELL_TQQQ, three[2])


def test_the_price_collar_compares_the_sizing_price_with_the_last_trade():
    collar = {"price_collar": 0.05}
    assert _limited([BUY_SSO], last={"SSO": 95.3}, **collar) == ((BUY_SSO,), ())  # 4.9% away
    passed, refused = _limited([BUY_SSO], last={"SSO": 94.0}, **collar)
    assert passed == () and refused[0].limit == "price_collar" and refused[0].value == pytest.approx(100 / 94 - 1)
    assert _limited([BUY_SSO], last={"SSO": 106.0}, **collar)[1][0].value == pytest.approx(1 - 100 / 106)
    assert _limited([BUY_SSO], last={}, **collar) == ((BUY_SSO,), ())  # no trade seen: nothing to compare
    assert _limited([SELL_TQQQ], last={"TQQQ": 40.0}, **collar)[1][0].limit == "price_collar"  # sells too


def test_reducing_only_lets_out_what_shrinks_a_position():
    holdings = {"SSO": 50.0, "TQQQ": -20.0, "TNA": 10.0}
    intents = [OrderIntent("SSO", "sell", 30.0, 0.1), OrderIntent("TQQQ", "buy", 20.0, 0.0),
               OrderIntent("TNA", "sell", 25.0, -0.1), OrderIntent("SSO", "buy", 1.0, 0.5),
               OrderIntent("ERX", "sell", 3.0, -0.1), OrderIntent("TQQQ", "sell", 1.0, -0.5),
               OrderIntent("FAS", "buy", 4.0, 0.2)]
    kept, held = reducing_only(intents, holdings)
    assert [(i.symbol, i.side, i.qty) for i in kept] == [("SSO", "sell", 30.0), ("TQQQ", "buy", 20.0),
                                                         ("TNA", "sell", 10.0)]  # the flip cut to a close
    assert [(i.symbol, i.side) for i in held] == [("SSO", "buy"), ("ERX", "sell"), ("TQQQ", "sell"), ("FAS", "buy")]


@pytest.mark.parametrize(("kwargs", "says"), [
    ({"max_order_notional": 0.0}, "max_order_notional"), ({"max_order_notional": -5.0}, "max_order_notional"),
    ({"max_position_notional": math.nan}, "max_position_notional"), ({"price_collar": -0.01}, "price_collar"),
    ({"price_collar": math.inf}, "price_collar"), ({"max_orders_per_day": 0}, "max_orders_per_day"),
    ({"max_orders_per_minute": 2.0}, "max_orders_per_minute"),
    ({"max_orders_per_minute": True}, "max_orders_per_minute"),
    ({"max_orders_per_minute": 11, "max_orders_per_day": 10}, "max_orders_per_minute .11. must not exceed"),
])
def test_bad_limits_are_refused(kwargs, says):
    with pytest.raises(ValueError, match=says):
        OrderLimits(**kwargs)
    assert OrderLimits(max_order_notional=10_000.0, max_position_notional=1_000.0).active  # order > position: fine


def test_an_order_that_only_reduces_a_position_is_exempt_from_the_notional_collar_and_rate_limits():
    """A 1,200-share close at $100 is refused by no notional, collar or rate limit: a loss stop must end flat."""
    close = OrderIntent("SSO", "sell", 1_200.0, 0.0)
    tight = {"max_order_notional": 50_000.0, "price_collar": 0.01, "max_orders_per_day": 3,
             "max_orders_per_minute": 1}
    assert _limited([close], holdings={"SSO": 1_200.0}, last={"SSO": 90.0}, minute=1, day=3, **tight) == (
        (close,), ())
    cover = OrderIntent("TQQQ", "buy", 20.0, 0.0)
    assert _limited([cover], holdings={"TQQQ": -20.0}, minute=1, day=3, **tight) == ((cover,), ())
    # what opens, adds or carries a position through zero is still limited
    flip = OrderIntent("SSO", "sell", 1_300.0, -0.1)
    assert _limited([flip], holdings={"SSO": 1_200.0}, **tight)[1][0].limit == "max_order_notional"
    assert _limited([BUY_SSO], holdings={"SSO": 10.0}, minute=1, max_orders_per_minute=1)[1][0].limit == (
        "max_orders_per_minute")
    # an exempt close still counts toward the rates: the order after it is refused
    passed, refused = _limited([close, BUY_SSO], holdings={"SSO": 1_200.0}, max_orders_per_minute=1)
    assert passed == (close,) and refused[0].limit == "max_orders_per_minute"
