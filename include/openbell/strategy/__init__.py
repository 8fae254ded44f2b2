"""Strategies: signal code shared by live trading and the backtest, plus risk limits.

A run names its strategy by a registered name, ``module:Class`` or a name published under the
``openbell.strategies`` entry points (:func:`resolve`); ``build(spec, params)`` gives a strategy ready for
``warmup`` then ``on_minute``. A class that does not meet the contract (:mod:`openbell.strategy.contract`)
and params outside the strategy's JSON schema raise :class:`InvalidParams`.
"""

from openbell.strategy import momentum as _momentum  # noqa: F401  (registers momentum_rotation)
from openbell.strategy import pairs as _pairs  # noqa: F401  (registers pair_rotation)
from openbell.strategy.base import (
    DEFAULT_UNIVERSE,
    INVERSE_PAIRS,
    Bar,
    InvalidParams,
    Strategy,
    StrategyClass,
    names,
    register,
)
from openbell.strategy.contract import diagnostics
from openbell.strategy.factory import build, params_schema, strategy_class, validate_params
from openbell.strategy.plugins import GROUP, known, resolve
from openbell.strategy.replay import targets
from openbell.strategy.risk import RiskGate, RiskLimits

__all__ = [
    "DEFAULT_UNIVERSE",
    "GROUP",
    "INVERSE_PAIRS",
    "Bar",
    "InvalidParams",
    "RiskGate",
    "RiskLimits",
    "Strategy",
    "StrategyClass",
    "build",
    "diagnostics",
    "known",
    "names",
    "params_schema",
    "register",
    "resolve",
    "strategy_class",
    "targets",
    "validate_params",
]
