"""A run's Params may tighten the deployment's risk limits, never loosen them: the ceilings (daily loss, gross,
per-order and per-symbol notional, collar) come from the Airflow Variable ``openbell_risk_ceilings`` (also read
from the environment as ``AIRFLOW_VAR_OPENBELL_RISK_CEILINGS``), default to today's defaults, and the first
task refuses a run asking for more before the day starts, naming the field and the ceiling."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from openbell.params import (
    CEILING_FIELDS,
    CEILINGS_VARIABLE,
    InvalidCeilings,
    InvalidRunParams,
    RiskCeilings,
    RunParams,
    check_run_params,
    deployment_ceilings,
)

ENV = "AIRFLOW_VAR_OPENBELL_RISK_CEILINGS"


@pytest.fixture(autouse=True)
def _no_deployment_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV, raising=False)


def _deploy(monkeypatch: pytest.MonkeyPatch, value: Any) -> None:
    monkeypatch.setenv(ENV, value if isinstance(value, str) else json.dumps(value))


def refused(params: dict[str, Any]) -> str:
    with pytest.raises(InvalidRunParams) as info:
        check_run_params({"params": params})
    return str(info.value)


def test_the_ceilings_are_the_five_risk_limits_and_default_to_todays_defaults() -> None:
    assert CEILING_FIELDS == ("daily_loss_limit", "max_gross", "max_order_notional", "max_position_notional",
                              "price_collar")
    assert CEILINGS_VARIABLE == "openbell_risk_ceilings"
    defaults = RunParams()
    ceilings = deployment_ceilings()  # nothing set: today's defaults
    assert ceilings == RiskCeilings()
    assert {name: getattr(ceilings, name) for name in CEILING_FIELDS} == {
        name: getattr(defaults, name) for name in CEILING_FIELDS}
    assert (ceilings.daily_loss_limit, ceilings.max_gross, ceilings.max_order_notional,
            ceilings.max_position_notional, ceilings.price_collar) == (0.03, 1.0, None, None, 0.05)
    check_run_params({"params": {}})  # the defaults pass their own ceilings


@pytest.mark.parametrize(
    ("name", "looser", "ceiling"),
    [("daily_loss_limit", 0.05, "0.03"), ("max_gross", 1.5, "1"), ("price_collar", 0.1, "0.05")],
)
def test_a_run_asking_for_more_than_a_default_ceiling_is_refused_naming_the_field_and_the_ceiling(
    name: str, looser: float, ceiling: str
) -> None:
    message = refused({name: looser})
    assert message.startswith(f"run parameter '{name}': {looser:g} is more than the deployment's ceiling "
                              f"{ceiling} (Airflow Variable openbell_risk_ceilings"), message
    tighter = getattr(RunParams(), name) / 2
    check_run_params({"params": {name: tighter}})  # tightening is always allowed
    check_run_params({"params": {name: getattr(RunParams(), name)}})  # so is the ceiling itself


def test_turning_the_collar_off_loosens_it_and_is_refused() -> None:
    message = refused({"price_collar": None})
    assert message.startswith("run parameter 'price_collar': null (no limit) is looser than the deployment's "
                              "ceiling 0.05"), message


def test_without_a_notional_ceiling_a_run_may_set_any_notional_limit_or_none() -> None:
    check_run_params({"params": {"max_order_notional": None, "max_position_notional": None}})
    check_run_params({"params": {"max_order_notional": 1e9, "max_position_notional": 1e9}})


@pytest.mark.parametrize("name", ["max_order_notional", "max_position_notional"])
def test_a_deployments_notional_ceiling_refuses_more_and_refuses_no_limit(name: str,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    _deploy(monkeypatch, {name: 25_000})
    assert getattr(deployment_ceilings(), name) == 25_000.0
    message = refused({name: 30_000})
    assert message.startswith(f"run parameter '{name}': 30000 is more than the deployment's ceiling 25000"), message
    assert refused({name: None}).startswith(f"run parameter '{name}': null (no limit) is looser than the "
                                            "deployment's ceiling 25000")
    refused({})  # the default (no limit) is looser than the deployment's ceiling too
    check_run_params({"params": {name: 25_000}})
    check_run_params({"params": {name: 10_000.5}})


def test_a_deployment_may_raise_or_lower_a_ceiling(monkeypatch: pytest.MonkeyPatch) -> None:
    _deploy(monkeypatch, {"daily_loss_limit": 0.05, "max_gross": 0.8, "price_collar": None})
    check_run_params({"params": {"daily_loss_limit": 0.05, "max_gross": 0.8, "price_collar": None}})
    assert refused({"daily_loss_limit": 0.06}).startswith("run parameter 'daily_loss_limit': 0.06 is more than "
                                                          "the deployment's ceiling 0.05")
    # a tighter ceiling than today's default refuses even the default
    assert refused({}).startswith("run parameter 'max_gross': 1 is more than the deployment's ceiling 0.8")


def test_the_ceilings_are_checked_after_the_params_own_rules() -> None:
    message = refused({"daily_loss_limit": math.nan})
    assert message.startswith("run parameter 'daily_loss_limit': NaN"), message
    assert "'max_orders_per_minute'" in refused({"max_orders_per_minute": 10, "max_orders_per_day": 9})


def test_runparams_checks_ceilings_only_when_given_them() -> None:
    assert RunParams.from_mapping({"daily_loss_limit": 0.05}).daily_loss_limit == 0.05  # a backtest's own params
    with pytest.raises(InvalidRunParams, match=r"'daily_loss_limit': 0.05 is more than .* ceiling 0.04"):
        RunParams.from_mapping({"daily_loss_limit": 0.05}, ceilings=RiskCeilings(daily_loss_limit=0.04))


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("{not json", "is not JSON"),
        ("[0.03]", "must be a JSON object"),
        ({"daily_loss": 0.02}, "unknown key 'daily_loss'"),
        ({"max_weight": 0.5}, "unknown key 'max_weight'"),
        ('{"daily_loss_limit": NaN}', "'daily_loss_limit': NaN is not a number"),
        ({"daily_loss_limit": None}, "'daily_loss_limit': None is not of type 'number'"),
        ({"max_gross": -1}, "'max_gross': -1 is less than or equal to the minimum of 0"),
        ({"price_collar": 2}, "'price_collar': 2 is greater than the maximum of 1"),
        ({"max_order_notional": "50000"}, "'max_order_notional': '50000' is not of type"),
    ],
)
def test_a_bad_deployment_setting_fails_the_check_naming_the_variable(monkeypatch: pytest.MonkeyPatch,
                                                                     value: Any, says: str) -> None:
    _deploy(monkeypatch, value)
    with pytest.raises(InvalidCeilings) as info:
        check_run_params({"params": {}})
    message = str(info.value)
    assert message.startswith("Airflow Variable openbell_risk_ceilings (AIRFLOW_VAR_OPENBELL_RISK_CEILINGS): "), message
    assert says in message, message
    assert isinstance(info.value, ValueError)


def test_an_empty_setting_keeps_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    _deploy(monkeypatch, "{}")
    assert deployment_ceilings() == RiskCeilings()
    _deploy(monkeypatch, {"max_gross": 2})
    assert deployment_ceilings() == RiskCeilings(max_gross=2.0)
