"""The strategy contract: bars in, target weights out; a registry of strategies by name."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar, runtime_checkable

import pandas as pd
from pydantic import BaseModel, ValidationError

if TYPE_CHECKING:
    import numpy as np

    from openbell.strategy.data import MarketArrays

DEFAULT_UNIVERSE: tuple[str, ...] = (
    "ERX", "ERY", "FAS", "FAZ", "SDS", "SSO", "SQQQ", "SVXY", "TNA", "TQQQ", "TZA", "UVXY",
)
INVERSE_PAIRS: tuple[tuple[str, str], ...] = (
    ("TQQQ", "SQQQ"), ("SSO", "SDS"), ("TNA", "TZA"), ("FAS", "FAZ"), ("ERX", "ERY"), ("SVXY", "UVXY"),
)


class InvalidParams(ValueError):
    """Strategy name or parameters refused; the message says which field and why."""


@dataclass(frozen=True, slots=True)
class Bar:
    """One minute bar; ``ts`` is the minute's start (UTC), as Alpaca stamps it."""

    symbol: str
    ts: datetime
    open: float
    high: float
    low: float
    close: float
    volume: float


@runtime_checkable
class Strategy(Protocol):
    """What the live loop and the backtest drive."""

    name: str
    params: BaseModel
    universe: tuple[str, ...]

    def warmup(self, history: pd.DataFrame) -> None:
        """Reset, then absorb a long frame (timestamp UTC, symbol, open, high, low, close, volume)."""
        ...

    def on_minute(self, ts: datetime, bars: Mapping[str, Bar]) -> dict[str, float]:
        """Target weights for every universe symbol after the minute that started at ``ts``."""
        ...


class StrategyClass(Protocol):
    """A registered strategy: a params model, a live constructor and a vectorized twin."""

    name: ClassVar[str]
    Params: ClassVar[type[BaseModel]]

    def __call__(self, params: Any, universe: Sequence[str] = ...) -> Strategy: ...

    def vector_targets(
        self, data: MarketArrays, params: Any, cache: dict[Any, Any] | None = None
    ) -> np.ndarray: ...


_REGISTRY: dict[str, Any] = {}
C = TypeVar("C")


def register(cls: C) -> C:
    """Class decorator adding a strategy to the registry under its ``name``."""
    name = cls.name  # type: ignore[attr-defined]
    if name in _REGISTRY and _REGISTRY[name] is not cls:
        raise ValueError(f"strategy {name!r} is already registered")
    _REGISTRY[name] = cls
    return cls


def names() -> list[str]:
    """Registered strategy names."""
    return sorted(_REGISTRY)


def strategy_class(name: str) -> Any:
    """The class registered under ``name``; InvalidParams if unknown."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise InvalidParams(f"unknown strategy {name!r}; known: {', '.join(names())}") from None


def validate_params(name: str, params: Mapping[str, Any] | BaseModel | None) -> BaseModel:
    """The strategy's params model from a mapping (None means defaults); InvalidParams when refused."""
    model: type[BaseModel] = strategy_class(name).Params
    if params is None:
        return model()
    if isinstance(params, model):
        return params
    if not isinstance(params, Mapping):
        raise InvalidParams(f"invalid {name} params: expected a mapping, got {type(params).__name__}")
    try:
        return model.model_validate(dict(params))
    except ValidationError as exc:
        raise InvalidParams(f"invalid {name} params: {_describe(exc)}") from None


def params_schema(name: str) -> dict[str, Any]:
    """The JSON schema of a strategy's params (bounds the optimizer searches and overrides must meet)."""
    return strategy_class(name).Params.model_json_schema()


def build(name: str, params: Mapping[str, Any] | BaseModel | None = None,
          universe: Sequence[str] = DEFAULT_UNIVERSE) -> Strategy:
    """A fresh strategy instance; raises InvalidParams with a clear message."""
    cls = strategy_class(name)
    return cls(validate_params(name, params), universe)


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "params"
        parts.append(f"{field}: {err['msg']} (got {err['input']!r})")
    return "; ".join(parts)

