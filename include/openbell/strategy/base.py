"""What a strategy is: bars in, target weights out (:class:`Strategy`); the registry of built-in strategies."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar, runtime_checkable

import pandas as pd
from pydantic import BaseModel

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
    """What the live loop and the backtest drive; it may also declare ``diagnostics() -> Mapping[str, float]``,
    per-symbol values recorded with each decision."""

    name: str
    params: BaseModel
    universe: tuple[str, ...]

    def warmup(self, history: pd.DataFrame) -> None:
        """Reset, then absorb a long frame (timestamp UTC, symbol, open, high, low, close, volume), possibly
        empty."""
        ...

    def on_minute(self, ts: datetime, bars: Mapping[str, Bar]) -> dict[str, float]:
        """Target weights for every universe symbol after the minute that started at ``ts``."""
        ...


class StrategyClass(Protocol):
    """A strategy's class, whatever its origin (see :mod:`openbell.strategy.contract`): a name, a params
    model and a constructor; optional: ``vector_targets``, the vectorized twin of ``on_minute``."""

    name: ClassVar[str]
    Params: ClassVar[type[BaseModel]]

    def __call__(self, params: Any, universe: Sequence[str] = ...) -> Strategy: ...


class VectorTwin(Protocol):
    """The optional vectorized twin: every minute's targets (T,N) of ``data`` at once."""

    def __call__(self, data: MarketArrays, params: Any, cache: dict[Any, Any] | None = None) -> np.ndarray: ...


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


def registered(name: str) -> Any | None:
    """The class registered under ``name``, or None."""
    return _REGISTRY.get(name)
