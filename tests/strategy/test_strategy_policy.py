"""The order policy: the live loop's rules (whole shares, min_notional, sells first, working orders)."""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Mapping

import pytest

from openbell.policy import Decision, OrderIntent, OrderPolicy, working_sides
from openbell.session.portfolio import Portfolio, Working

U = ["ERX", "FAS", "SSO", "TNA", "TQQQ"]


def reference(p: Portfolio, weights: Mapping[str, float], universe: Iterable[str], min_notional: float,
              deferred: list[str] | None = None) -> list[OrderIntent]:
    """The live loop's rules as they were written before the policy existed: the oracle it must match."""
    equity = p.equity()
    out: list[OrderIntent] = []
    for symbol in sorted(universe):
        price = p.prices.get(symbol)
        if not price or price <= 0 or not math.isfinite(price):
            continue
        weight = float(weights.get(symbol, 0.0))
        target = math.trunc(weight * equity / price) if equity > 0 else 0
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


def test_the_rebalance_band_skips_small_weight_changes():
    args = _policy_args(weights={"SSO": 0.3, "TNA": 0.2}, holdings={"SSO": 28.0, "TNA": 60.0})
    # SSO is at 0.28 (change 0.02, $200), TNA at 0.18 (change 0.02, $180)
    assert len(OrderPolicy(min_notional=100.0).decide(**args).intents) == 2
    assert OrderPolicy(min_notional=100.0, band=0.025).decide(**args).intents == ()
    d = OrderPolicy(min_notional=100.0, band=0.019).decide(**args)
    assert [(o.symbol, o.qty) for o in d.intents] == [("SSO", 2.0), ("TNA", 6.0)]


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
