"""RunParams refuses what the DAG's Params would refuse, and what JSON schema cannot see, naming the field."""

from __future__ import annotations

import math
from typing import Any

import pytest

from openbell.params import SCHEMAS, InvalidRunParams, RunParams, check_run_params

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
        ({"universe": "TQQQ"}, "universe", "not of type 'array'"),
        ({"universe": []}, "universe", "should be non-empty"),
        ({"universe": ["tqqq"]}, "universe[0]", "does not match"),
        ({"universe": ["TQQQ", "TQQQ\n"]}, "universe[1]", "does not match"),
        ({"universe": ["TQQQ", 5]}, "universe[1]", "not of type 'string'"),
        ({"universe": ["TQQQ", "TQQQ"]}, "universe", "non-unique"),
        ({"strategy": 3}, "strategy", "not of type 'string'"),
        ({"strategy": "mean_reversion"}, "strategy", "unknown strategy 'mean_reversion'; known: momentum_rotation"),
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
