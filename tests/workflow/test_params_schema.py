"""The DAG's Params are generated from RunParams: one declaration, the same refusals at trigger time
(the api-server validating a run's conf) and in the tasks."""

from __future__ import annotations

import math
from importlib.metadata import EntryPoint
from typing import Any

import annotated_types
import pytest

from openbell.params import InvalidRunParams, RunParams, dag_params
from openbell.strategy import GROUP
from openbell.strategy import plugins as strategy_plugins


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


PLUG_IN = "ob_example:Leaders"  # tests/strategies, on sys.path as on the workers' PYTHONPATH


def test_the_strategy_is_a_known_name_or_a_class_path_at_trigger_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """The form offers the known names and takes module:Class too; whether that class imports and meets the
    contract, the first task checks."""
    monkeypatch.setattr(strategy_plugins, "published", lambda: {
        "ob_leaders": EntryPoint(name="ob_leaders", value=PLUG_IN, group=GROUP)})
    assert dag_params()["strategy"].schema["examples"] == ["momentum_rotation", "ob_leaders", "pair_rotation"]
    for good in ["momentum_rotation", "pair_rotation", "ob_leaders", PLUG_IN, "ob_example.sub:Outer.Inner"]:
        assert at_trigger(strategy=good) == "accepted", good
    for good in ["momentum_rotation", "pair_rotation", "ob_leaders", PLUG_IN]:
        assert in_task(strategy=good) == "accepted", good
    for bad in ["mean_reversion", "", ":Leaders", "ob_example:", "a:b:c", "ob example:Leaders", f"{PLUG_IN}\n"]:
        refused = at_trigger(strategy=bad)
        assert refused.startswith("refused: Invalid input for param strategy:"), bad
        assert in_task(strategy=bad).startswith("refused: run parameter 'strategy': "), bad
    assert "does not import" in in_task(strategy="ob_no_such_module:Leaders")


def test_strategy_params_are_an_object_at_trigger_time_and_the_strategys_own_in_the_task() -> None:
    """Airflow validates each Param alone, so at trigger time strategy_params cannot depend on the strategy
    chosen (which may be a class the DAG never saw); RunParams checks them against its schema, and the first
    task runs it before the wait."""
    for bad in ["lookback=10", [], {"threshold": math.nan}]:
        assert at_trigger(strategy_params=bad).startswith("refused: Invalid input for param strategy_params:"), bad
        assert in_task(strategy_params=bad).startswith("refused: run parameter 'strategy_params': "), bad
    for good in [None, {}, {"lookback": 10, "weighting": "score"}]:
        assert at_trigger(strategy_params=good) == "accepted" == in_task(strategy_params=good), good
    for wrong in [{"lookback": 1}, {"lookback": 30.5}, {"bogus": 1}, {"window": 10}]:
        assert at_trigger(strategy_params=wrong) == "accepted", wrong
        refused = in_task(strategy_params=wrong)
        assert refused.startswith("refused: run parameter 'strategy_params': invalid momentum_rotation params: "), wrong
    assert at_trigger(strategy=PLUG_IN, strategy_params={"lookback": 1}) == "accepted"
    assert in_task(strategy=PLUG_IN, strategy_params={"lookback": 1}) == "accepted"
    assert "lookback: Input should be greater than or equal to 1" in in_task(strategy=PLUG_IN,
                                                                            strategy_params={"lookback": 0})
