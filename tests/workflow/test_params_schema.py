"""The DAG's Params are generated from RunParams: one declaration, the same refusals at trigger time
(the api-server validating a run's conf) and in the tasks."""

from __future__ import annotations

import math
from typing import Any

import annotated_types
import pytest
from pydantic import BaseModel, ConfigDict, Field

from openbell.params import InvalidRunParams, RunParams, dag_params
from openbell.strategy import base as strategy_base


def served() -> Any:
    """The Params as the api-server holds them (server-side params, validated on trigger)."""
    from airflow.serialization.definitions.param import SerializedParam, SerializedParamsDict

    params = dag_params()
    return SerializedParamsDict({k: SerializedParam(p.value, p.description, **p.schema) for k, p in params.items()})


def at_trigger(**conf: Any) -> str:
    """``accepted``, or ``refused: <Airflow's message>``."""
    try:
        served().deep_merge(conf).validate()
    except Exception as exc:
        return f"refused: {exc}"
    return "accepted"


def in_task(**conf: Any) -> str:
    try:
        RunParams.from_mapping(conf)
    except InvalidRunParams as exc:
        return f"refused: {exc}"
    return "accepted"


def test_every_param_is_a_run_params_field_with_its_default_and_description() -> None:
    params = dag_params()
    defaults = RunParams()
    assert list(params) == list(RunParams.model_fields)
    for name, field in RunParams.model_fields.items():
        assert params[name].value == getattr(defaults, name), name
        assert params[name].description == field.description, name
        assert "title" not in params[name].schema and "default" not in params[name].schema
    assert at_trigger() == "accepted"


def _bounds(name: str) -> tuple[float, bool, float]:
    """(lower, lower is exclusive, upper) as the model field declares them."""
    lower, exclusive, upper = None, False, None
    for rule in RunParams.model_fields[name].metadata:
        if isinstance(rule, annotated_types.Ge):
            lower = rule.ge
        elif isinstance(rule, annotated_types.Gt):
            lower, exclusive = rule.gt, True
        elif isinstance(rule, annotated_types.Le):
            upper = rule.le
    assert lower is not None and upper is not None, name
    return lower, exclusive, upper


NUMBERS = [name for name, f in RunParams.model_fields.items() if f.annotation in (int, float)]


@pytest.mark.parametrize("name", NUMBERS)
def test_the_fields_bounds_are_the_params_bounds(name: str) -> None:
    lower, exclusive, upper = _bounds(name)
    step = 1 if RunParams.model_fields[name].annotation is int else 1e-9
    inside = lower + step if exclusive else lower
    for value, outcome in [(inside, "accepted"), (upper, "accepted"), (lower - step, "refused"),
                           (upper + step, "refused")]:
        assert at_trigger(**{name: value}).startswith(outcome), (name, value)
        assert in_task(**{name: value}).startswith(outcome), (name, value)
    if exclusive:
        assert at_trigger(**{name: lower}).startswith("refused") and in_task(**{name: lower}).startswith("refused")
    assert at_trigger(**{name: math.nan}).startswith("refused") and "NaN" in in_task(**{name: math.nan})


def test_an_unknown_strategy_and_bad_strategy_params_are_refused_at_trigger_time() -> None:
    refused = at_trigger(strategy="mean_reversion")
    assert refused.startswith("refused: Invalid input for param strategy:") and "mean_reversion" in refused
    for bad in [{"lookback": 1}, {"lookback": 30.5}, {"threshold": math.nan}, {"bogus": 1}, "lookback=10", []]:
        assert at_trigger(strategy_params=bad).startswith("refused: Invalid input for param strategy_params:"), bad
        assert in_task(strategy_params=bad).startswith("refused: run parameter 'strategy_params': "), bad
    for good in [None, {}, {"lookback": 10, "weighting": "score"}]:
        assert at_trigger(strategy_params=good) == "accepted" == in_task(strategy_params=good), good


class _ReversionParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    window: int = Field(20, ge=2, le=50)


class _Reversion:
    name = "mean_reversion"
    Params = _ReversionParams


def test_with_two_strategies_the_params_accept_either_and_the_task_checks_the_chosen_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Airflow validates each Param alone, so at trigger time strategy_params must fit one registered strategy;
    which one the run chose, RunParams checks (the first task runs it before the wait)."""
    monkeypatch.setitem(strategy_base._REGISTRY, "mean_reversion", _Reversion)
    assert at_trigger(strategy="mean_reversion", strategy_params={"window": 10}) == "accepted"
    assert in_task(strategy="mean_reversion", strategy_params={"window": 10}) == "accepted"
    assert at_trigger(strategy_params={"window": 1}).startswith("refused")  # fits neither strategy
    assert at_trigger(strategy_params={"window": 10, "lookback": 10}).startswith("refused")
    assert at_trigger(strategy="trend").startswith("refused")
    mismatch = in_task(strategy="momentum_rotation", strategy_params={"window": 10})
    assert mismatch.startswith("refused: run parameter 'strategy_params': ") and "window" in mismatch
