"""RunParams refuses what the DAG's Params would refuse, and what JSON schema cannot see, naming the field."""

from __future__ import annotations

import math
from typing import Any

import pytest

from openbell.params import RUN_DEFAULTS_ENV, SCHEMAS, InvalidRunParams, RunParams, check_run_params, run_defaults

NAN = math.nan
NUMBER_FIELDS = [name for name, schema in SCHEMAS.items() if schema.get("type") in ("number", "integer")]


def refused(values: dict[str, Any]) -> str:
    with pytest.raises(InvalidRunParams) as info:
        RunParams.from_mapping(values)
    assert isinstance(info.value, ValueError)
    return str(info.value)


def test_defaults_and_good_values_are_accepted() -> None:
    assert RunParams.from_mapping({}) == RunParams()
    p = RunParams.from_mapping({"universe": ["TQQQ", "BRK.B"], "max_weight": 1, "history_days": 20.0,
                                "strategy_params": {"lookback": 10, "threshold": 0.5}, "unknown_key": "ignored"})
    assert p.universe == ["TQQQ", "BRK.B"] and p.max_weight == 1.0 and isinstance(p.max_weight, float)
    assert p.history_days == 20 and isinstance(p.history_days, int)
    assert p.strategy_params == {"lookback": 10, "threshold": 0.5}


@pytest.mark.parametrize("name", NUMBER_FIELDS)
def test_nan_is_refused_for_every_number(name: str) -> None:
    assert f"'{name}'" in refused({name: NAN}) and "NaN" in refused({name: NAN})


@pytest.mark.parametrize(
    ("values", "field", "says"),
    [
        ({"max_weight": "0.5"}, "max_weight", "not of type 'number'"),
        ({"max_weight": True}, "max_weight", "not of type 'number'"),
        ({"history_days": False}, "history_days", "not of type 'integer'"),
        ({"history_days": 5.5}, "history_days", "not of type 'integer'"),
        ({"max_gross": math.inf}, "max_gross", "maximum"),
        ({"daily_loss_limit": 0}, "daily_loss_limit", "less than or equal to the minimum"),
        ({"rebalance_band": 1.5}, "rebalance_band", "maximum"),
        ({"rebalance_band": -0.1}, "rebalance_band", "minimum"),
        ({"universe": "TQQQ"}, "universe", "not of type 'array'"),
        ({"universe": []}, "universe", "should be non-empty"),
        ({"universe": ["tqqq"]}, "universe[0]", "does not match"),
        ({"universe": ["TQQQ", "TQQQ\n"]}, "universe[1]", "does not match"),
        ({"universe": ["TQQQ", 5]}, "universe[1]", "not of type 'string'"),
        ({"universe": ["TQQQ", "TQQQ"]}, "universe", "non-unique"),
        ({"strategy": 3}, "strategy", "not of type 'string'"),
        ({"strategy": "mean_reversion"}, "strategy", "unknown strategy 'mean_reversion'; known: momentum_rotation"),
        ({"strategy": ":Leaders"}, "strategy", "strategy ':Leaders': the module is missing before ':'"),
        ({"strategy": "ob_example:Leaders", "strategy_params": {"lookback": 0}}, "strategy_params",
         "invalid ob_example:Leaders params: lookback: Input should be greater than or equal to 1"),
        ({"strategy_params": "lookback=10"}, "strategy_params", "not of type"),
        ({"strategy_params": {"lookback": 1}}, "strategy_params", "lookback: Input should be greater than or equal"),
        ({"strategy_params": {"lookback": 30.0}}, "strategy_params", "lookback: Input should be a valid integer"),
        ({"strategy_params": {"bogus": 1}}, "strategy_params", "bogus: Extra inputs are not permitted"),
        ({"strategy_params": {"threshold": NAN}}, "strategy_params", "NaN"),
    ],
)
def test_bad_values_are_refused_naming_the_field(values: dict[str, Any], field: str, says: str) -> None:
    message = refused(values)
    assert message.startswith(f"run parameter '{field}': "), message
    assert says in message, message


def test_direct_construction_is_checked_too() -> None:
    with pytest.raises(InvalidRunParams, match=r"'max_weight'.*NaN"):
        RunParams(max_weight=NAN)


def test_the_first_task_checks_the_run_params_before_it_waits() -> None:
    check_run_params({"params": {"max_weight": 0.5}})
    with pytest.raises(InvalidRunParams, match=r"'strategy_params': .*lookback"):
        check_run_params({"params": {"strategy_params": {"lookback": 1}}})


LIMIT_FIELDS = ["max_order_notional", "max_position_notional", "max_orders_per_minute", "max_orders_per_day",
                "price_collar"]


def test_pre_trade_limits_default_and_turn_off() -> None:
    limits = RunParams().order_limits()
    assert (limits.max_order_notional, limits.max_position_notional) == (None, None)
    assert (limits.max_orders_per_minute, limits.max_orders_per_day, limits.price_collar) == (60, 2000, 0.05)
    off = RunParams.from_mapping({name: None for name in LIMIT_FIELDS}).order_limits()
    assert not off.active
    p = RunParams.from_mapping({"max_order_notional": 10_000, "max_position_notional": 5_000.0,
                                "max_orders_per_minute": 5, "max_orders_per_day": 5, "price_collar": 1})
    assert p.order_limits().max_order_notional == 10_000.0 and p.order_limits().max_orders_per_day == 5


@pytest.mark.parametrize("name", LIMIT_FIELDS)
def test_a_limit_that_is_nan_negative_or_zero_is_refused_naming_it(name: str) -> None:
    for bad in (NAN, -1, 0):
        message = refused({name: bad})
        assert message.startswith(f"run parameter '{name}': "), message
    assert "NaN" in refused({name: NAN})


@pytest.mark.parametrize(
    ("values", "field", "says"),
    [
        ({"price_collar": -0.02}, "price_collar", "less than or equal to the minimum of 0"),
        ({"price_collar": 1.5}, "price_collar", "greater than the maximum of 1"),
        ({"price_collar": "5%"}, "price_collar", "not of type 'number', 'null'"),
        ({"max_orders_per_minute": 2.5}, "max_orders_per_minute", "not of type 'integer', 'null'"),
        ({"max_orders_per_day": True}, "max_orders_per_day", "not of type 'integer', 'null'"),
        ({"max_order_notional": math.inf}, "max_order_notional", "maximum"),
        ({"max_orders_per_minute": 100, "max_orders_per_day": 50}, "max_orders_per_minute",
         "100 is more than max_orders_per_day (50)"),
        ({"max_orders_per_minute": 3000}, "max_orders_per_minute", "more than max_orders_per_day (2000)"),
    ],
)
def test_bad_limits_are_refused_naming_the_field(values: dict[str, Any], field: str, says: str) -> None:
    message = refused(values)
    assert message.startswith(f"run parameter '{field}': "), message
    assert says in message, message


def test_consistent_limits_are_accepted() -> None:
    ok = {"max_orders_per_minute": 50, "max_orders_per_day": 50, "max_order_notional": 20_000,
          "max_position_notional": 5_000}  # a max order larger than the max position is fine
    assert RunParams.from_mapping(ok).max_position_notional == 5_000.0
    unlimited_day = RunParams.from_mapping({"max_orders_per_minute": 3000, "max_orders_per_day": None})
    assert unlimited_day.max_orders_per_day is None
    with pytest.raises(InvalidRunParams, match=r"'max_orders_per_minute'.*more than"):
        check_run_params({"params": {"max_orders_per_minute": 10, "max_orders_per_day": 9}})


def test_the_deployment_sets_the_defaults_of_a_run_that_asks_for_nothing() -> None:
    assert run_defaults({}) == RunParams()
    chosen = run_defaults({RUN_DEFAULTS_ENV: '{"max_order_notional": 20000, "daily_loss_limit": 0.02}'})
    assert (chosen.max_order_notional, chosen.daily_loss_limit, chosen.max_weight) == (20000, 0.02, 0.25)


@pytest.mark.parametrize(("raw", "says"), [
    ("{not json", "is not JSON"),
    ("[1, 2]", "must be a JSON object"),
    ('{"max_ordr_notional": 5}', "unknown run parameters: max_ordr_notional"),
    ('{"daily_loss_limit": 0.9}', "daily_loss_limit"),
    ('{"strategy": "no_such_strategy"}', "strategy"),
])
def test_bad_deployment_defaults_are_refused_naming_the_variable(raw: str, says: str) -> None:
    with pytest.raises(InvalidRunParams, match=f"{RUN_DEFAULTS_ENV}.*{says}"):
        run_defaults({RUN_DEFAULTS_ENV: raw})
