"""Strategies: signal code shared by live trading and the backtest, plus risk limits.

``build(name, params)`` gives a strategy ready for ``warmup`` then ``on_minute``; params outside the
strategy's JSON schema raise :class:`InvalidParams`.
"""

from openbell.strategy import momentum as _momentum  # noqa: F401  (registers momentum_rotation)
from openbell.strategy.base import (
    DEFAULT_UNIVERSE,
    INVERSE_PAIRS,
    Bar,
    InvalidParams,
    Strategy,
    build,
    names,
    params_schema,
    register,
    strategy_class,
    validate_params,
)
from openbell.strategy.risk import RiskGate, RiskLimits

__all__ = [
    "DEFAULT_UNIVERSE",
    "INVERSE_PAIRS",
    "Bar",
    "InvalidParams",
    "RiskGate",
    "RiskLimits",
    "Strategy",
    "build",
    "names",
    "params_schema",
    "register",
    "strategy_class",
    "validate_params",
]
