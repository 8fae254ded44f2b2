"""A strategy's params and instances from the spelling of its name (see :func:`~openbell.strategy.plugins.resolve`).

Every function takes what a run's ``strategy`` holds: a registered name, ``module:Class`` or a published name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ValidationError

from openbell.strategy.base import DEFAULT_UNIVERSE, InvalidParams, Strategy, StrategyClass
from openbell.strategy.plugins import resolve


def strategy_class(spec: str) -> StrategyClass:
    """The class ``spec`` names; :class:`InvalidParams` if it names none or one that breaks the contract."""
    return resolve(spec)


def validate_params(spec: str, params: Mapping[str, Any] | BaseModel | None) -> BaseModel:
    """The strategy's params model from a mapping (None means defaults); InvalidParams when refused."""
    model: type[BaseModel] = resolve(spec).Params
    if isinstance(params, model):
        return params
    if params is not None and not isinstance(params, Mapping):
        raise InvalidParams(f"invalid {spec} params: expected a mapping, got {type(params).__name__}")
    try:
        return model.model_validate(dict(params or {}))
    except ValidationError as exc:
        raise InvalidParams(f"invalid {spec} params: {_describe(exc)}") from None


def params_schema(spec: str) -> dict[str, Any]:
    """The JSON schema of a strategy's params (bounds the optimizer searches and overrides must meet)."""
    return resolve(spec).Params.model_json_schema()


def build(spec: str, params: Mapping[str, Any] | BaseModel | None = None,
          universe: Sequence[str] = DEFAULT_UNIVERSE) -> Strategy:
    """A fresh strategy instance; raises InvalidParams with a clear message."""
    return resolve(spec)(validate_params(spec, params), tuple(universe))


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "params"
        parts.append(f"{field}: {err['msg']} (got {err['input']!r})")
    return "; ".join(parts)
