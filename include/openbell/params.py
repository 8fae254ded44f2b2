"""The trading day's run configuration: DAG Params with a JSON schema, checked at trigger time."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

DEFAULT_UNIVERSE = ["ERX", "ERY", "FAS", "FAZ", "SDS", "SSO", "SQQQ", "SVXY", "TNA", "TQQQ", "TZA", "UVXY"]

SCHEMAS: dict[str, dict[str, Any]] = {
    "universe": {
        "type": "array",
        "items": {"type": "string", "pattern": "^[A-Z][A-Z.]{0,9}$"},
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
    "max_weight": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
    "max_gross": {"type": "number", "exclusiveMinimum": 0, "maximum": 2},
    "daily_loss_limit": {"type": "number", "exclusiveMinimum": 0, "maximum": 0.5},
    "min_notional": {"type": "number", "minimum": 1, "maximum": 1_000_000},
    "open_offset_minutes": {"type": "number", "minimum": 0, "maximum": 60, "description": "Start after the open."},
    "optimize_minutes_before_close": {"type": "number", "minimum": 10, "maximum": 360},
    "liquidate_minutes_before_close": {"type": "number", "minimum": 1, "maximum": 30},
    "optimize_budget_seconds": {"type": "number", "minimum": 1, "maximum": 1800},
    "optimize_sessions": {"type": "integer", "minimum": 2, "maximum": 60},
}


@dataclass(frozen=True)
class RunParams:
    """The validated settings of one trading day."""

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

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> RunParams:
        """Settings from a run's params, ignoring keys this version does not know."""
        known = {k: v for k, v in values.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def dag_params() -> dict[str, Any]:
    """The DAG's Params: defaults from :class:`RunParams`, each with its JSON schema."""
    from airflow.sdk import Param

    defaults = RunParams()
    return {name: Param(getattr(defaults, name), **schema) for name, schema in SCHEMAS.items()}
