"""Strategy registry and params validation: bad params are refused with a clear message."""

from __future__ import annotations

import pytest

from openbell.strategy import InvalidParams, build, names, params_schema, validate_params


def test_registry_and_defaults():
    assert "momentum_rotation" in names()
    s = build("momentum_rotation")
    assert s.name == "momentum_rotation"
    assert s.params.lookback == 30
    assert build("momentum_rotation", {"lookback": 45, "weighting": "score"}).params.lookback == 45


def test_schema_publishes_bounds():
    props = params_schema("momentum_rotation")["properties"]
    assert props["lookback"]["minimum"] == 2 and props["lookback"]["maximum"] == 240
    assert props["top_k"]["maximum"] == 6
    assert props["weighting"]["enum"] == ["equal", "score"]
    assert props["gross"]["exclusiveMinimum"] == 0


@pytest.mark.parametrize(("params", "needle"), [
    ({"lookback": 1000}, "lookback: Input should be less than or equal to 240 (got 1000)"),
    ({"top_k": 0}, "top_k: Input should be greater than or equal to 1"),
    ({"threshold": -0.5}, "threshold: Input should be greater than or equal to 0"),
    ({"lookback": "30"}, "lookback: Input should be a valid integer (got '30')"),
    ({"lookback": 30.5}, "lookback: Input should be a valid integer"),
    ({"top_k": True}, "top_k: Input should be a valid integer"),
    ({"weighting": "max"}, "weighting: Input should be 'equal' or 'score'"),
    ({"gross": 0.0}, "gross: Input should be greater than 0"),
    ({"lookbak": 30}, "lookbak: Extra inputs are not permitted"),
    ([("lookback", 30)], "expected a mapping, got list"),
])
def test_invalid_params_are_refused_clearly(params, needle):
    with pytest.raises(InvalidParams) as err:
        build("momentum_rotation", params)
    assert str(err.value).startswith("invalid momentum_rotation params: ")
    assert needle in str(err.value)


def test_every_problem_is_reported_at_once():
    with pytest.raises(InvalidParams) as err:
        validate_params("momentum_rotation", {"lookback": 0, "vol_window": 10_000})
    assert "lookback:" in str(err.value) and "vol_window:" in str(err.value)


def test_unknown_strategy_names_the_known_ones():
    with pytest.raises(InvalidParams, match=r"unknown strategy 'mean_reversion'; known: .*momentum_rotation"):
        build("mean_reversion")
