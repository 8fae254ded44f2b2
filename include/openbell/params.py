"""The trading day's run configuration: DAG Params with a JSON schema, checked at trigger time.

JSON schema compares NaN false with every bound, so ``minimum``/``maximum`` let it through: every number
also carries :data:`NOT_NAN`. What a Param schema cannot express (the chosen strategy's own parameter
rules; Python-only distinctions such as ``30.0`` for an integer) :class:`RunParams` checks, and the DAG's
first task runs :func:`check_run_params` before it waits for the open.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field, fields
from typing import Any

DEFAULT_UNIVERSE = ["ERX", "ERY", "FAS", "FAZ", "SDS", "SSO", "SQQQ", "SVXY", "TNA", "TQQQ", "TZA", "UVXY"]

# A number that passes both bounds is NaN (every real number fails one of them); "not" refuses it.
NOT_NAN: dict[str, Any] = {"not": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 0}}


def _number(**schema: Any) -> dict[str, Any]:
    return {"type": "number", **NOT_NAN, **schema}


SCHEMAS: dict[str, dict[str, Any]] = {
    "universe": {
        "type": "array",
        # (?!\n): a pattern is searched, and "$" also matches before a trailing newline
        "items": {"type": "string", "pattern": "^[A-Z][A-Z.]{0,9}(?!\\n)$"},
        "minItems": 1,
        "maxItems": 50,
        "uniqueItems": True,
        "description": "Symbols to download and trade.",
    },
    "history_days": {"type": "integer", "minimum": 1, "maximum": 90, "description": "Calendar days of bars."},
    "warmup_sessions": {"type": "integer", "minimum": 1, "maximum": 60},
    "strategy": {"type": "string", "minLength": 1, "description": "Registered strategy name."},
    "strategy_params": {
        "type": ["object", "null"],
        "description": "Parameters overriding the latest stored version (validated by the strategy).",
    },
    "max_weight": _number(exclusiveMinimum=0, maximum=1),
    "max_gross": _number(exclusiveMinimum=0, maximum=2),
    "daily_loss_limit": _number(exclusiveMinimum=0, maximum=0.5),
    "min_notional": _number(minimum=1, maximum=1_000_000),
    "open_offset_minutes": _number(minimum=0, maximum=60, description="Start after the open."),
    "optimize_minutes_before_close": _number(minimum=10, maximum=360),
    "liquidate_minutes_before_close": _number(minimum=1, maximum=30),
    "optimize_budget_seconds": _number(minimum=1, maximum=1800),
    "optimize_sessions": {"type": "integer", "minimum": 2, "maximum": 60},
}


class InvalidRunParams(ValueError):
    """A run parameter was refused; the message names the field and why."""


def _has_nan(value: Any) -> bool:
    if isinstance(value, float):
        return math.isnan(value)
    if isinstance(value, dict):
        return any(_has_nan(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_has_nan(v) for v in value)
    return False


def _checked(name: str, value: Any) -> Any:
    """``value`` of field ``name`` if its schema accepts it (integral numbers as int, numbers as float)."""
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import best_match

    if _has_nan(value):
        raise InvalidRunParams(f"run parameter {name!r}: NaN is not a number")
    schema = SCHEMAS[name]
    error = best_match(Draft202012Validator(schema).iter_errors(value))
    if error is not None:
        where = name + "".join(f"[{p}]" for p in error.absolute_path)
        raise InvalidRunParams(f"run parameter {where!r}: {error.message}")
    if schema["type"] == "integer":
        return int(value)
    if schema["type"] == "number":
        return float(value)
    return value


@dataclass(frozen=True)
class RunParams:
    """The validated settings of one trading day; :class:`InvalidRunParams` names a refused field."""

    universe: list[str] = field(default_factory=lambda: list(DEFAULT_UNIVERSE))
    history_days: int = 30
    warmup_sessions: int = 5
    strategy: str = "momentum_rotation"
    strategy_params: dict[str, Any] | None = None
    max_weight: float = 0.25
    max_gross: float = 1.0
    daily_loss_limit: float = 0.03
    min_notional: float = 100.0
    open_offset_minutes: float = 0.0
    optimize_minutes_before_close: float = 90.0
    liquidate_minutes_before_close: float = 2.0
    optimize_budget_seconds: float = 60.0
    optimize_sessions: int = 20

    def __post_init__(self) -> None:
        from openbell.strategy import InvalidParams, strategy_class, validate_params

        for f in fields(self):
            object.__setattr__(self, f.name, _checked(f.name, getattr(self, f.name)))
        try:
            strategy_class(self.strategy)
        except InvalidParams as exc:
            raise InvalidRunParams(f"run parameter 'strategy': {exc}") from None
        try:
            validate_params(self.strategy, self.strategy_params)
        except InvalidParams as exc:
            raise InvalidRunParams(f"run parameter 'strategy_params': {exc}") from None

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> RunParams:
        """Settings from a run's params, ignoring keys this version does not know."""
        known = {k: v for k, v in values.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def check_run_params(context: Any) -> None:
    """Refuse the run's params (:class:`InvalidRunParams`); the first task's ``pre_execute`` hook."""
    RunParams.from_mapping(dict(context.get("params") or {}))


def _without_nan(schema: Any) -> Any:
    """``schema`` with :data:`NOT_NAN` added to every number in it."""
    if isinstance(schema, list):
        return [_without_nan(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _without_nan(v) for k, v in schema.items()}
    kind = out.get("type")
    if kind == "number" or (isinstance(kind, list) and "number" in kind):
        out.update(copy.deepcopy(NOT_NAN))
    return out


def param_schemas() -> dict[str, dict[str, Any]]:
    """Each Param's schema: :data:`SCHEMAS`, with ``strategy`` limited to the registered strategies and
    ``strategy_params`` to what one of their schemas accepts (exactly the chosen one's while there is one)."""
    from openbell.strategy import names, params_schema

    schemas = copy.deepcopy(SCHEMAS)
    schemas["strategy"]["enum"] = names()
    defs: dict[str, Any] = {}
    choices: list[dict[str, Any]] = [{"type": "null"}]
    for name in names():
        own = _without_nan(params_schema(name))
        for key, value in own.pop("$defs", {}).items():  # refs point at the root
            if defs.setdefault(key, value) != value:
                raise ValueError(f"strategy {name!r}: schema definition {key!r} clashes with another strategy's")
        choices.append(own)
    schemas["strategy_params"]["anyOf"] = choices
    if defs:
        schemas["strategy_params"]["$defs"] = defs
    return schemas


def dag_params() -> dict[str, Any]:
    """The DAG's Params: defaults from :class:`RunParams`, each with its JSON schema."""
    from airflow.sdk import Param

    defaults = RunParams()
    return {name: Param(getattr(defaults, name), **schema) for name, schema in param_schemas().items()}
