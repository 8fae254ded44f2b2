"""A strategy from anywhere: a registered name, ``module:Class`` or an entry point, checked against the contract
before anything runs, and driven by every caller (params checks, backtest, optimizer) without a vectorized twin."""

from __future__ import annotations

import logging
import sys
from dataclasses import replace
from importlib.metadata import EntryPoint
from typing import Any

import numpy as np
import pandas as pd
import pytest
from ob_example import Leaders, LeadersParams
from pydantic import BaseModel
from strategy_synth import make_bars

from openbell import backtest, optimize
from openbell.params import InvalidRunParams, RunParams, check_run_params
from openbell.strategy import (
    DEFAULT_UNIVERSE,
    GROUP,
    Bar,
    InvalidParams,
    RiskLimits,
    build,
    diagnostics,
    known,
    params_schema,
    resolve,
    strategy_class,
    validate_params,
)
from openbell.strategy import plugins as strategy_plugins
from openbell.strategy.data import prepare
from openbell.strategy.momentum import MomentumRotation
from openbell.strategy.replay import minute_bars

SPEC = "ob_example:Leaders"


@pytest.fixture(scope="module")
def bars() -> pd.DataFrame:
    return make_bars(5, seed=3)


def publish(monkeypatch: pytest.MonkeyPatch, **entries: str) -> None:
    """Entry points of openbell.strategies as if installed packages published them (name=module:Class)."""
    eps = {name: EntryPoint(name=name, value=value, group=GROUP) for name, value in entries.items()}
    monkeypatch.setattr(strategy_plugins, "published", lambda: eps)


def refusal(spec: str) -> str:
    with pytest.raises(InvalidParams) as info:
        resolve(spec)
    return str(info.value)


# -- the three spellings --------------------------------------------------------------------------------


def test_a_registered_name_a_class_path_and_an_entry_point_resolve(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve("momentum_rotation") is MomentumRotation
    assert resolve(SPEC) is Leaders
    publish(monkeypatch, ob_leaders=SPEC)
    assert resolve("ob_leaders") is Leaders
    assert known() == ["momentum_rotation", "ob_leaders", "pair_rotation"]


def test_an_installed_distribution_publishes_a_strategy(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real lookup: a distribution's metadata on sys.path, as an installed package leaves it."""
    meta = tmp_path / "ob_leaders_dist-1.0.dist-info"
    meta.mkdir()
    (meta / "METADATA").write_text("Metadata-Version: 2.1\nName: ob-leaders-dist\nVersion: 1.0\n")
    (meta / "entry_points.txt").write_text(f"[{GROUP}]\nob_from_dist = {SPEC}\n")
    strategy_plugins.published.cache_clear()
    assert "ob_from_dist" not in known()
    monkeypatch.syspath_prepend(str(tmp_path))
    strategy_plugins.published.cache_clear()
    try:
        assert resolve("ob_from_dist") is Leaders and "ob_from_dist" in known()
    finally:
        strategy_plugins.published.cache_clear()


def test_every_caller_takes_a_plug_in(monkeypatch: pytest.MonkeyPatch) -> None:
    publish(monkeypatch, ob_leaders=SPEC)
    for spec in (SPEC, "ob_leaders"):
        assert strategy_class(spec) is Leaders
        params = validate_params(spec, {"lookback": 5})
        assert isinstance(params, LeadersParams) and params.lookback == 5
        assert params_schema(spec)["properties"]["top_k"]["maximum"] == 10
        strategy = build(spec, {"top_k": 3}, ["TQQQ", "SQQQ"])
        assert isinstance(strategy, Leaders) and strategy.universe == ("TQQQ", "SQQQ")
        run = RunParams.from_mapping({"strategy": spec, "strategy_params": {"gross": 0.25}})
        assert (run.strategy, run.strategy_params) == (spec, {"gross": 0.25})
        check_run_params({"params": {"strategy": spec, "strategy_params": {"top_k": 1}}})


# -- refusals, each naming why --------------------------------------------------------------------------


@pytest.mark.parametrize(("spec", "says"), [
    ("momentum", "unknown strategy 'momentum'; known: momentum_rotation, pair_rotation (or name a class as "
                 "module:Class)"),
    ("ob_example:", "strategy 'ob_example:': the class is missing after ':'"),
    (":Leaders", "strategy ':Leaders': the module is missing before ':'"),
    ("ob_example:Leaders:x", "strategy 'ob_example:Leaders:x': a class is named module:Class, with a single ':'"),
    ("ob_example::Leaders", "with a single ':'"),
    ("ob example:Leaders", "'ob example' is not a module name"),
    ("ob_example:Lead-ers", "'Lead-ers' is not a class name"),
    ("ob_no_such_module:Leaders", "module 'ob_no_such_module' does not import: ModuleNotFoundError: "
                                  "No module named 'ob_no_such_module'"),
    ("ob_example:Laggards", "strategy 'ob_example:Laggards': module 'ob_example' has no 'Laggards'"),
])
def test_a_spelling_that_names_no_class_is_refused_saying_why(spec: str, says: str) -> None:
    assert says in refusal(spec)


def test_the_unknown_name_lists_the_published_names_too(monkeypatch: pytest.MonkeyPatch) -> None:
    publish(monkeypatch, ob_leaders=SPEC)
    assert "known: momentum_rotation, ob_leaders, pair_rotation " in refusal("leaders")


@pytest.mark.parametrize(("code", "says"), [
    ("import ob_cuda_kernels\n", "ModuleNotFoundError: No module named 'ob_cuda_kernels'"),
    ("raise RuntimeError('set OB_API_KEY first')\n", "RuntimeError: set OB_API_KEY first"),
])
def test_a_module_that_fails_to_import_is_refused_with_its_error(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, code: str, says: str,
) -> None:
    (tmp_path / "ob_fragile.py").write_text(code)
    monkeypatch.syspath_prepend(str(tmp_path))
    message = refusal("ob_fragile:Strategy")
    assert message == f"strategy 'ob_fragile:Strategy': module 'ob_fragile' does not import: {says}"
    with pytest.raises(InvalidRunParams, match=r"^run parameter 'strategy': .*does not import: " + says.split(":")[0]):
        RunParams.from_mapping({"strategy": "ob_fragile:Strategy"})


class _Base:
    def __init__(self, params: BaseModel, universe: tuple[str, ...]) -> None:
        self.params, self.universe = params, universe

    def warmup(self, history: pd.DataFrame) -> None:
        pass

    def on_minute(self, ts: Any, bars: Any) -> dict[str, float]:
        return {}


class NoOnMinute:
    name = "no_on_minute"
    Params = LeadersParams

    def __init__(self, params: BaseModel, universe: tuple[str, ...]) -> None:
        pass

    def warmup(self, history: pd.DataFrame) -> None:
        pass


class NoParams(_Base):
    name = "no_params"


class NoName(_Base):
    Params = LeadersParams


class NumberName(_Base):
    name = 7
    Params = LeadersParams


class DictParams(_Base):
    name = "dict_params"
    Params = dict


class InstanceParams(_Base):
    name = "instance_params"
    Params = LeadersParams()  # an instance, not the model class


class NoUniverse(_Base):
    name = "no_universe"
    Params = LeadersParams

    def __init__(self, params: BaseModel) -> None:
        self.params = params


class TwinIsData(_Base):
    name = "twin_is_data"
    Params = LeadersParams
    vector_targets = np.zeros(3)


def a_function(params: BaseModel, universe: tuple[str, ...]) -> None:
    """Not a class."""


@pytest.mark.parametrize(("attribute", "says"), [
    ("NoOnMinute", "missing on_minute()"),
    ("NoParams", "missing Params (a pydantic model class)"),
    ("NoName", "missing name (a str)"),
    ("NumberName", "name must be a non-empty str, got 7"),
    ("DictParams", "Params is not a pydantic model class (got <class 'dict'>)"),
    ("InstanceParams", "Params is not a pydantic model class (got LeadersParams("),
    ("NoUniverse", "the constructor cannot be called as NoUniverse(params, universe) (its signature is (params: "),
    ("TwinIsData", "vector_targets is not a method (got ndarray)"),
    ("a_function", "it is not a class (got function)"),
])
def test_a_class_that_breaks_the_contract_is_refused_naming_what_is_missing(
    monkeypatch: pytest.MonkeyPatch, attribute: str, says: str,
) -> None:
    monkeypatch.setitem(sys.modules, "ob_faulty", sys.modules[__name__])
    message = refusal(f"ob_faulty:{attribute}")
    assert message.startswith(f"strategy 'ob_faulty:{attribute}' does not meet the strategy contract: "), message
    assert says in message
    run = pytest.raises(InvalidRunParams, match=r"^run parameter 'strategy': .*does not meet the strategy contract")
    with run:
        check_run_params({"params": {"strategy": f"ob_faulty:{attribute}"}})


def test_every_gap_is_named_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ob_faulty", sys.modules[__name__])

    class Bare:
        pass

    monkeypatch.setattr(sys.modules[__name__], "Bare", Bare, raising=False)
    message = refusal("ob_faulty:Bare")
    for gap in ("missing name", "missing Params", "missing warmup()", "missing on_minute()", "cannot be called"):
        assert gap in message


def test_an_entry_point_that_fails_to_load_or_breaks_the_contract_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    publish(monkeypatch, ob_broken="ob_no_such_module:Leaders", ob_params="ob_example:LeadersParams")
    assert refusal("ob_broken") == (
        f"strategy 'ob_broken': entry point 'ob_no_such_module:Leaders' ({GROUP}) does not load: "
        "ModuleNotFoundError: No module named 'ob_no_such_module'")
    assert refusal("ob_params").startswith("strategy 'ob_params' does not meet the strategy contract: missing name")
    with pytest.raises(InvalidRunParams, match=r"^run parameter 'strategy': strategy 'ob_broken': entry point"):
        RunParams.from_mapping({"strategy": "ob_broken"})


@pytest.mark.parametrize(("params", "says"), [
    ({"lookback": 0}, "lookback: Input should be greater than or equal to 1 (got 0)"),
    ({"gross": 1.5}, "gross: Input should be less than or equal to 1"),
    ({"lookbak": 5}, "lookbak: Extra inputs are not permitted"),
    ({"top_k": 2.5}, "top_k: Input should be a valid integer"),
])
def test_params_the_plug_ins_schema_refuses_are_refused_naming_the_field(params: dict[str, Any], says: str) -> None:
    with pytest.raises(InvalidParams, match=f"^invalid {SPEC} params: ") as info:
        build(SPEC, params)
    assert says in str(info.value)
    with pytest.raises(InvalidRunParams) as run:
        check_run_params({"params": {"strategy": SPEC, "strategy_params": params}})
    assert str(run.value).startswith(f"run parameter 'strategy_params': invalid {SPEC} params: ")
    assert says in str(run.value)


class _Required(BaseModel):
    window: int


class RequiredParams(_Base):
    name = "required_params"
    Params = _Required


def test_params_without_defaults_are_refused_when_none_are_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ob_faulty", sys.modules[__name__])
    with pytest.raises(InvalidParams, match="invalid ob_faulty:RequiredParams params: window: Field required"):
        build("ob_faulty:RequiredParams")
    assert build("ob_faulty:RequiredParams", {"window": 3}).params.window == 3


# -- replayed instead of vectorized ---------------------------------------------------------------------


def test_without_a_twin_the_backtest_replays_on_minute_as_the_live_loop_would(bars: pd.DataFrame) -> None:
    params = {"lookback": 10, "top_k": 3}
    result = backtest.run(SPEC, params, bars, warmup_sessions=1)
    live = backtest.replay(build(SPEC, params), bars, warmup_sessions=1)
    assert result.targets.index.equals(live.index) and list(result.targets.columns) == list(DEFAULT_UNIVERSE)
    np.testing.assert_allclose(result.targets.to_numpy(), live.to_numpy(), rtol=0, atol=1e-12)
    held = result.targets.to_numpy()
    assert np.isclose(held.sum(axis=1), 0.5).mean() > 0.5  # three symbols rising most of the time
    assert len({tuple(r) for r in held}) > 20  # and changing
    shares = backtest.run_shares(SPEC, params, bars, warmup_sessions=1)
    assert len(shares.orders) > 0


def test_the_optimizer_scores_a_plug_in_on_the_replayed_targets(bars: pd.DataFrame) -> None:
    incumbent = {"lookback": 20, "top_k": 2, "gross": 0.5}
    result = optimize.optimize(bars, strategy=SPEC, incumbent=incumbent, n_candidates=6, workers=1, seed=1,
                               train_sessions=3, warmup_sessions=1)
    assert result.incumbent_params == incumbent and result.evaluated == 7
    # the incumbent's in-sample score is the backtest's Sharpe over the latest three sessions
    run = backtest.run(SPEC, incumbent, bars, warmup_sessions=1)
    days = run.returns.index.tz_convert("America/New_York").strftime("%Y%m%d").astype(int)
    latest = run.returns[np.isin(days, run.sessions[-3:])].to_numpy()
    expected = backtest.sharpe(len(latest), float(latest.sum()), float((latest * latest).sum()))
    assert expected != 0.0
    assert result.incumbent_in_sample == pytest.approx(expected, rel=1e-9)


def test_the_replay_hands_on_minute_the_bars_of_the_frame(bars: pd.DataFrame) -> None:
    """Every bar of the frame, with all its fields, in its own minute: what the live loop hands over."""
    minutes = minute_bars(prepare(bars, DEFAULT_UNIVERSE))
    assert all(bar.ts == ts for ts, batch in minutes for bar in batch.values())
    fed = {(bar.symbol, bar.ts): bar for _, batch in minutes for bar in batch.values()}
    assert len(fed) == len(bars)
    for row in bars.sample(300, random_state=0).itertuples():
        ts = row.timestamp.to_pydatetime()
        assert fed[(row.symbol, ts)] == Bar(row.symbol, ts, row.open, row.high, row.low, row.close, row.volume)


# -- diagnostics ----------------------------------------------------------------------------------------


def test_diagnostics_are_what_the_strategy_declares(bars: pd.DataFrame, caplog: pytest.LogCaptureFixture) -> None:
    leaders = build(SPEC, {"lookback": 5})
    leaders.warmup(bars.iloc[:600])
    assert diagnostics(leaders) == {}
    backtest.replay(leaders, bars.iloc[:2000])
    assert set(diagnostics(leaders)) == set(DEFAULT_UNIVERSE)
    assert diagnostics(_Base(LeadersParams(), DEFAULT_UNIVERSE)) == {}

    class Failing(_Base):
        def diagnostics(self) -> dict[str, float]:
            raise ZeroDivisionError("no bars yet")

    with caplog.at_level(logging.ERROR, logger="openbell.strategy.contract"):
        assert diagnostics(Failing(LeadersParams(), DEFAULT_UNIVERSE)) == {}
    assert "Failing.diagnostics() failed" in caplog.text


def test_a_plug_in_in_a_submodule_holds_the_fallers_short(bars: pd.DataFrame) -> None:
    """``module.sub:Class`` resolves; the long/short plug-in the early-close day trades goes short as it says."""
    spec = "ob_example.laggards:LeadersAndLaggards"
    assert validate_params(spec, {"short_k": 2}).model_dump() == {"lookback": 15, "top_k": 2, "gross": 0.5,
                                                                  "short_k": 2, "short_gross": 0.2}
    held = backtest.run(spec, {"lookback": 10, "short_k": 2, "short_gross": 0.3}, bars,
                        warmup_sessions=1).targets.to_numpy()
    shorts = np.where(held < 0, held, 0.0).sum(axis=1)
    assert np.isclose(shorts, -0.3).mean() > 0.5  # two symbols falling most of the time
    assert np.isclose(np.where(held > 0, held, 0.0).sum(axis=1), 0.5).mean() > 0.5
    assert (held.min(axis=1) >= -0.15 - 1e-12).all()


def test_the_share_backtest_sells_short_only_the_shortable_symbols(bars: pd.DataFrame) -> None:
    """With ``RiskLimits.shortable`` naming some symbols, a short target of any other is 0, as the live risk gate
    sets it; without a list every symbol may be sold short."""
    spec, params = "ob_example.laggards:LeadersAndLaggards", {"lookback": 10, "short_k": 2, "short_gross": 0.3}
    limits = RiskLimits(max_weight=0.5, daily_loss_limit=None, allow_short=True)
    every = backtest.run_shares(spec, params, bars, limits=limits, cash=1e6)
    shorted = set(every.positions.columns[(every.positions < 0).any()])
    assert len(shorted) >= 3
    some = frozenset(sorted(shorted)[:2])
    only = backtest.run_shares(spec, params, bars, limits=replace(limits, shortable=some), cash=1e6)
    assert set(only.positions.columns[(only.positions < 0).any()]) == some
    assert len(only.orders) > 0
    vector = backtest.run(spec, params, bars, limits=replace(limits, shortable=some)).weights
    assert set(vector.columns[(vector < 0).any()]) == some
