"""The strategy contract, checked, and its optional parts.

A strategy is any class with a ``name`` (a non-empty str), a ``Params`` pydantic model class, a constructor
``Cls(params, universe)``, ``warmup(history)`` and ``on_minute(ts, bars) -> dict[str, float]``; no base class
is needed. Optional: ``vector_targets(data, params, cache)``, the vectorized twin of ``on_minute`` (the backtest
and the optimizer replay ``on_minute`` without it), and ``diagnostics() -> Mapping[str, float]``, per-symbol
values recorded with each decision.
"""

from __future__ import annotations

import inspect
import logging
import math
from typing import Any

from pydantic import BaseModel

from openbell.strategy.base import InvalidParams, Strategy, StrategyClass, VectorTwin

log = logging.getLogger(__name__)

REQUIRED_METHODS = ("warmup", "on_minute")
OPTIONAL_METHODS = ("vector_targets", "diagnostics")


def problems(obj: Any) -> list[str]:
    """What ``obj`` lacks to be a strategy class; empty when it meets the contract."""
    if not isinstance(obj, type):
        return [f"it is not a class (got {type(obj).__name__})"]
    found: list[str] = []
    name = getattr(obj, "name", None)
    if name is None:
        found.append("missing name (a str)")
    elif not (isinstance(name, str) and name):
        found.append(f"name must be a non-empty str, got {name!r}")
    params = getattr(obj, "Params", None)
    if params is None:
        found.append("missing Params (a pydantic model class)")
    elif not (isinstance(params, type) and issubclass(params, BaseModel)):
        found.append(f"Params is not a pydantic model class (got {params!r})")
    for method in REQUIRED_METHODS:
        if getattr(obj, method, None) is None:
            found.append(f"missing {method}()")
    for method in (*REQUIRED_METHODS, *OPTIONAL_METHODS):
        value = getattr(obj, method, None)
        if value is not None and not callable(value):
            found.append(f"{method} is not a method (got {type(value).__name__})")
    found += _constructor_problems(obj)
    return found


def _constructor_problems(cls: type) -> list[str]:
    try:
        signature = inspect.signature(cls)
    except (TypeError, ValueError):  # no signature to read (some builtins): the call itself will tell
        return []
    try:
        signature.bind(None, ())
    except TypeError as exc:
        return [f"the constructor cannot be called as {cls.__name__}(params, universe) "
                f"(its signature is {signature}: {exc})"]
    return []


def check(obj: Any, spec: str) -> StrategyClass:
    """``obj`` when it meets the contract, else :class:`InvalidParams` naming everything it lacks."""
    found = problems(obj)
    if found:
        raise InvalidParams(f"strategy {spec!r} does not meet the strategy contract: {'; '.join(found)}")
    return obj  # type: ignore[no-any-return]


def vector_twin(cls: StrategyClass) -> VectorTwin | None:
    """The class's vectorized twin, or None when it has none."""
    return getattr(cls, "vector_targets", None)


def diagnostics(strategy: Strategy) -> dict[str, float]:
    """What the strategy's ``diagnostics()`` reports, finite values only; empty when it declares none. A
    failure is logged and reported as nothing: it must not stop a decision from being recorded."""
    hook = getattr(type(strategy), "diagnostics", None)
    if hook is None:
        return {}
    try:
        values = {str(k): float(v) for k, v in hook(strategy).items()}
    except Exception:
        log.exception("%s.diagnostics() failed", type(strategy).__name__)
        return {}
    return {k: v for k, v in values.items() if math.isfinite(v)}
