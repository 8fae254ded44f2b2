"""The trading day's run configuration, declared once: :class:`RunParams`, a pydantic model.

The DAG's Params (validated by Airflow at trigger time) are generated from the model's JSON schema
(:func:`dag_params`), and :class:`RunParams` checks every given value against that same schema before
pydantic converts it, so the trigger form, the API and the tasks refuse the same values with the same
messages. Two additions the model's own schema does not carry are made here:

- NaN: JSON schema compares NaN false with every bound, so ``minimum``/``maximum`` let it through; every
  number also carries :data:`NOT_NAN`, and :class:`RunParams` refuses NaN anywhere, naming the field.
- The strategies: the Param ``strategy`` takes a registered or published name (:func:`openbell.strategy.known`)
  or a ``module:Class`` spelling, and ``strategy_params`` an object without NaN. Airflow validates each Param
  on its own, so no Param schema can pick a strategy's schema by the value of ``strategy`` (and a class named
  ``module:Class`` is not known when the DAG is parsed); whether the strategy resolves, meets the contract
  and accepts ``strategy_params`` (Python-only distinctions such as ``30.0`` for an integer included),
  :class:`RunParams` checks through :func:`openbell.strategy.resolve`, and the DAG's first task runs
  :func:`check_run_params` before it waits for the open.

The deployment's risk ceilings (:class:`RiskCeilings`: ``daily_loss_limit``, ``max_gross``,
``max_order_notional``, ``max_position_notional``, ``price_collar``) bound what a run may ask for: a run may
tighten a limit, never loosen it. They are the Airflow Variable ``openbell_risk_ceilings``, a JSON object
(Airflow reads it from the environment variable ``AIRFLOW_VAR_OPENBELL_RISK_CEILINGS`` first, then from its
database), each key left out keeping today's default; a null ceiling means none. Whoever may trigger
``trading_day`` cannot raise them: that takes the deployment's environment or Airflow's Variable permission.
:func:`check_run_params` refuses a run over a ceiling before the day starts, naming the field and the ceiling.
"""

from __future__ import annotations

import copy
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

from openbell.policy import OrderLimits

DEFAULT_UNIVERSE = ["ERX", "ERY", "FAS", "FAZ", "SDS", "SSO", "SQQQ", "SVXY", "TNA", "TQQQ", "TZA", "UVXY"]

# A number that passes both bounds is NaN (every real number fails one of them); "not" refuses it.
NOT_NAN: dict[str, Any] = {"not": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 0}}

NUMBER_BOUNDS = {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"}

# (?!\n): a pattern is searched, and "$" also matches before a trailing newline
Symbol = Annotated[str, StringConstraints(pattern="^[A-Z][A-Z.]{0,9}(?!\\n)$")]


class InvalidRunParams(ValueError):
    """A run parameter was refused; the message names the field and why."""


class RunParams(BaseModel):
    """The validated settings of one trading day; :class:`InvalidRunParams` names a refused field.

    Each field's type, bounds and description are the single declaration of that run parameter: its
    DAG Param and its JSON schema are generated from it.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", regex_engine="python-re")

    universe: list[Symbol] = Field(
        default_factory=lambda: list(DEFAULT_UNIVERSE), min_length=1, max_length=50,
        json_schema_extra={"uniqueItems": True}, description="Symbols to download and trade.",
    )
    history_days: int = Field(30, ge=1, le=90, description="Calendar days of bars.")
    warmup_sessions: int = Field(5, ge=1, le=60)
    strategy: str = Field("momentum_rotation", min_length=1, description="A registered strategy name, a name an "
                          "installed package publishes (entry points 'openbell.strategies'), or module:Class.")
    strategy_params: dict[str, Any] | None = Field(None, description="The strategy's parameters for the whole day "
                                                   "(no midday search); null: the latest stored version.")
    max_weight: float = Field(0.25, gt=0, le=1)
    max_gross: float = Field(1.0, gt=0, le=2)
    daily_loss_limit: float = Field(0.03, gt=0, le=0.5)
    min_notional: float = Field(100.0, ge=1, le=1_000_000)
    rebalance_band: float = Field(
        0.2, ge=0, le=1,
        description="No order for a change smaller than this share of the target position (0.2: a position "
                    "within 20% of its target is left alone; 0: trade every change worth min_notional). "
                    "A close always goes.",
    )
    max_order_notional: float | None = Field(None, gt=0, le=1e12, description="Pre-trade limit: largest order "
                                             "(shares x price, a notional order's dollars); null: no limit.")
    max_position_notional: float | None = Field(None, gt=0, le=1e12, description="Pre-trade limit: largest "
                                                "position per symbol an order may build; null: no limit.")
    max_orders_per_minute: int | None = Field(60, ge=1, le=10_000, description="Pre-trade limit: orders sent in "
                                              "any minute; null: no limit.")
    max_orders_per_day: int | None = Field(2000, ge=1, le=1_000_000, description="Pre-trade limit: orders sent "
                                           "in the session; null: no limit.")
    price_collar: float | None = Field(
        0.05, gt=0, le=1,
        description="Pre-trade limit: an order sized at a price this far (0.05: 5%) from the last trade "
                    "is refused; null: no collar.",
    )
    fractional: bool = Field(
        False, description="Size orders in fractions of a share (up to 9 decimals) for the assets the broker "
                           "says are fractionable; any other asset, and every short, in whole shares.",
    )
    order_type: Literal["market", "limit", "notional"] = Field(
        "market", description="'market', or 'limit': a marketable DAY limit at the decided price x (1 + "
                              "limit_collar) for a buy, x (1 - limit_collar) for a sell; one the market does not "
                              "reach keeps working until it fills, is cancelled or expires at the close; or "
                              "'notional' (needs fractional): a buy of a fractionable asset is a market order for "
                              "dollars (shares x decided price, cut to cents; none under $1), other orders by qty.",
    )
    limit_collar: float = Field(0.002, gt=0, le=0.05, description="How far beyond the decided price a limit "
                                "order reaches (0.002: 0.2%).")
    allow_short: bool = Field(
        False, description="Let negative target weights become short sales, of assets the broker says are "
                           "shortable and easy to borrow (any other: target 0, with a note).",
    )
    strategy_budget_seconds: float = Field(20.0, gt=0, le=60, description="Market seconds on_minute may take; a "
                                           "later answer is a strategy failure (minute skipped, positions kept).")
    strategy_failures_to_reduce: int = Field(5, ge=1, le=390, description="Strategy failures in a row that move "
                                             "the session to REDUCING.")
    open_offset_minutes: float = Field(0.0, ge=0, le=60, description="Start after the open.")
    optimize_minutes_before_close: float = Field(90.0, ge=10, le=360)
    liquidate_minutes_before_close: float = Field(2.0, ge=1, le=30)
    optimize_budget_seconds: float = Field(60.0, ge=1, le=1800)
    optimize_sessions: int = Field(20, ge=2, le=60)

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise _refusal(exc) from None

    @classmethod
    def model_validate(cls, obj: Any, **kwargs: Any) -> RunParams:  # type: ignore[override]
        try:
            return super().model_validate(obj, **kwargs)
        except ValidationError as exc:
            raise _refusal(exc) from None

    @classmethod
    def from_mapping(cls, values: dict[str, Any], *, ceilings: RiskCeilings | None = None) -> RunParams:
        """Settings from a run's params, ignoring keys this version does not know; with ``ceilings``, refused
        when they loosen one of them (after every other check)."""
        params = cls(**{k: v for k, v in values.items() if k in cls.model_fields})
        refusal = ceilings.refusal(params) if ceilings is not None else None
        if refusal:
            raise InvalidRunParams(refusal)
        return params

    @model_validator(mode="before")
    @classmethod
    def _schema_first(cls, values: Any) -> Any:
        """Each given value against its field's JSON schema, as Airflow checks a Param, in field order."""
        if isinstance(values, dict):
            for name in cls.model_fields:
                if name in values:
                    _check(name, values[name])
        return values

    @model_validator(mode="after")
    def _fields_agree(self) -> RunParams:
        minute, day = self.max_orders_per_minute, self.max_orders_per_day
        if minute is not None and day is not None and minute > day:
            raise InvalidRunParams(f"run parameter 'max_orders_per_minute': {minute} is more than "
                                   f"max_orders_per_day ({day})")
        if self.order_type == "notional" and not self.fractional:
            raise InvalidRunParams("run parameter 'order_type': 'notional' needs fractional true (notional orders "
                                   "buy fractions of a share), got fractional false")
        return self

    def order_limits(self) -> OrderLimits:
        """The pre-trade limits of the order policy."""
        return OrderLimits(max_order_notional=self.max_order_notional,
                           max_position_notional=self.max_position_notional,
                           max_orders_per_day=self.max_orders_per_day,
                           max_orders_per_minute=self.max_orders_per_minute, price_collar=self.price_collar)

    @model_validator(mode="after")
    def _strategy_accepts(self) -> RunParams:
        from openbell.strategy import InvalidParams, resolve, validate_params

        try:
            resolve(self.strategy)
        except InvalidParams as exc:
            raise InvalidRunParams(f"run parameter 'strategy': {exc}") from None
        try:
            validate_params(self.strategy, self.strategy_params)
        except InvalidParams as exc:
            raise InvalidRunParams(f"run parameter 'strategy_params': {exc}") from None
        return self


def _refusal(exc: ValidationError) -> InvalidRunParams:
    """The :class:`InvalidRunParams` behind pydantic's error, or one naming the field pydantic refused."""
    first = exc.errors()[0]
    cause = first.get("ctx", {}).get("error")
    if isinstance(cause, InvalidRunParams):
        return cause
    loc = [str(p) for p in first["loc"]]
    where = (loc[0] + "".join(f"[{p}]" for p in loc[1:])) if loc else "run parameters"
    return InvalidRunParams(f"run parameter {where!r}: {first['msg']}")


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """``anyOf: [{type: T, ...}, {type: null}]`` as ``type: [T, null]`` (how a Param form reads it); the
    bounds of a number move along (JSON schema applies them to numbers only, so null still passes)."""
    choices = schema.get("anyOf")
    if not (isinstance(choices, list) and len(choices) == 2 and choices[1] == {"type": "null"}):
        return schema
    inner = {k: v for k, v in choices[0].items() if not (k == "additionalProperties" and v is True)}
    if not (set(inner) - NUMBER_BOUNDS == {"type"} and isinstance(inner["type"], str)):
        return schema
    if set(inner) != {"type"} and inner["type"] not in ("number", "integer"):
        return schema
    out = {k: v for k, v in schema.items() if k != "anyOf"}
    bounds = {k: v for k, v in inner.items() if k != "type"}
    return {"type": [inner["type"], "null"], **bounds, **out}


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


def _field_schemas() -> dict[str, dict[str, Any]]:
    """Each field's JSON schema, from the model: no titles or defaults (the Param holds the default)."""
    properties = RunParams.model_json_schema()["properties"]
    schemas = {}
    for name in RunParams.model_fields:
        schema = {k: v for k, v in properties[name].items() if k not in ("title", "default")}
        schemas[name] = _without_nan(_nullable(schema))
    return schemas


# Each run parameter's JSON schema, generated from RunParams (what RunParams checks a given value against).
SCHEMAS: dict[str, dict[str, Any]] = _field_schemas()


def _has_nan(value: Any) -> bool:
    if isinstance(value, float):
        return math.isnan(value)
    if isinstance(value, dict):
        return any(_has_nan(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_has_nan(v) for v in value)
    return False


def _check(name: str, value: Any) -> None:
    """Refuse ``value`` of field ``name`` unless its schema accepts it (:class:`InvalidRunParams`)."""
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import best_match

    if _has_nan(value):
        raise InvalidRunParams(f"run parameter {name!r}: NaN is not a number")
    error = best_match(Draft202012Validator(SCHEMAS[name]).iter_errors(value))
    if error is not None:
        where = name + "".join(f"[{p}]" for p in error.absolute_path)
        raise InvalidRunParams(f"run parameter {where!r}: {error.message}")


def check_run_params(context: Any) -> None:
    """Refuse the run's params (:class:`InvalidRunParams`), also when they loosen one of the deployment's
    risk ceilings (:func:`deployment_ceilings`; :class:`InvalidCeilings` when those cannot be read); the first
    task's ``pre_execute`` hook."""
    RunParams.from_mapping(dict(context.get("params") or {}), ceilings=deployment_ceilings())


# -- the deployment's risk ceilings -----------------------------------------------------------------------

CEILINGS_VARIABLE = "openbell_risk_ceilings"
CEILINGS_ENV = "AIRFLOW_VAR_" + CEILINGS_VARIABLE.upper()
CEILING_FIELDS = ("daily_loss_limit", "max_gross", "max_order_notional", "max_position_notional", "price_collar")


class InvalidCeilings(ValueError):
    """The deployment's ceilings setting cannot be used; the message names the Variable and the key."""


def _default(name: str) -> Any:
    return RunParams.model_fields[name].default


@dataclass(frozen=True)
class RiskCeilings:
    """The loosest value a run may ask for of each risk limit (None: no ceiling); today's defaults unless the
    deployment sets them. For every one of them a larger value is looser, and null (no limit) loosest."""

    daily_loss_limit: float = _default("daily_loss_limit")
    max_gross: float = _default("max_gross")
    max_order_notional: float | None = _default("max_order_notional")
    max_position_notional: float | None = _default("max_position_notional")
    price_collar: float | None = _default("price_collar")

    @classmethod
    def parse(cls, value: Any) -> RiskCeilings:
        """The ceilings of a setting: JSON text or a mapping (None or empty text: the defaults); each value is
        checked against its run parameter's schema, so a ceiling is a value a run could ask for."""
        where = f"Airflow Variable {CEILINGS_VARIABLE} ({CEILINGS_ENV})"
        if value is None or (isinstance(value, str) and not value.strip()):
            return cls()
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError as exc:
                raise InvalidCeilings(f"{where}: the setting is not JSON ({exc})") from None
        if not isinstance(value, dict):
            raise InvalidCeilings(f"{where}: the setting must be a JSON object of ceilings, e.g. "
                                  f'{{"daily_loss_limit": 0.02}}; got {type(value).__name__}')
        for key in value:
            if key not in CEILING_FIELDS:
                raise InvalidCeilings(f"{where}: unknown key {key!r}; the ceilings are {', '.join(CEILING_FIELDS)}")
        for key, ceiling in value.items():
            try:
                _check(key, ceiling)
            except InvalidRunParams as exc:
                raise InvalidCeilings(f"{where}: {str(exc).removeprefix('run parameter ')}") from None
        return cls(**{k: None if v is None else float(v) for k, v in value.items()})

    def refusal(self, params: RunParams) -> str | None:
        """Why ``params`` loosen a ceiling (the first field in :data:`CEILING_FIELDS` order), or None."""
        for f in fields(self):
            ceiling, asked = getattr(self, f.name), getattr(params, f.name)
            if ceiling is None:
                continue
            where = f"the deployment's ceiling {ceiling:g} (Airflow Variable {CEILINGS_VARIABLE})"
            if asked is None:
                return f"run parameter {f.name!r}: null (no limit) is looser than {where}"
            if asked > ceiling:
                return f"run parameter {f.name!r}: {asked:g} is more than {where}"
        return None


def deployment_ceilings() -> RiskCeilings:
    """The deployment's ceilings: the Airflow Variable :data:`CEILINGS_VARIABLE` (Airflow looks in the
    environment, :data:`CEILINGS_ENV`, before its database), the defaults when it is not set;
    :class:`InvalidCeilings` when it is set but unusable."""
    from airflow.sdk import Variable

    return RiskCeilings.parse(Variable.get(CEILINGS_VARIABLE, default=None))


# module:Class, each part a Python identifier path ("(?!\n)$": a pattern is searched, and "$" also matches
# before a trailing newline)
CLASS_PATH = r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*(?!\n)$"


def param_schemas() -> dict[str, dict[str, Any]]:
    """Each Param's schema: :data:`SCHEMAS`, with ``strategy`` limited to the known names (offered as examples
    in the trigger form) or a ``module:Class`` spelling, and ``strategy_params`` to an object without NaN (the
    chosen strategy's own schema is :class:`RunParams`' to check)."""
    from openbell.strategy import known

    schemas = copy.deepcopy(SCHEMAS)
    schemas["strategy"]["examples"] = known()
    schemas["strategy"]["anyOf"] = [{"enum": known()}, {"pattern": CLASS_PATH}]
    schemas["strategy_params"]["additionalProperties"] = copy.deepcopy(NOT_NAN)
    return schemas


RUN_DEFAULTS_ENV = "OPENBELL_RUN_DEFAULTS"


def run_defaults(environ: Mapping[str, str] = os.environ) -> RunParams:
    """The settings of a run that asks for nothing (every scheduled run): :class:`RunParams`' defaults, with
    the deployment's own from the environment variable :data:`RUN_DEFAULTS_ENV` (a JSON object of run
    parameters) when it is set. Refused (:class:`InvalidRunParams`, naming the variable) when unreadable or
    not a valid run; the DAG file then fails to parse, shown as an import error in Airflow's UI."""
    raw = environ.get(RUN_DEFAULTS_ENV, "").strip()
    if not raw:
        return RunParams()
    try:
        values = json.loads(raw)
    except ValueError as exc:
        raise InvalidRunParams(f"{RUN_DEFAULTS_ENV} is not JSON: {exc}") from None
    if not isinstance(values, dict):
        raise InvalidRunParams(f"{RUN_DEFAULTS_ENV} must be a JSON object of run parameters, got {raw[:80]!r}")
    unknown = sorted(set(values) - set(RunParams.model_fields))
    if unknown:
        raise InvalidRunParams(f"{RUN_DEFAULTS_ENV} names unknown run parameters: {', '.join(unknown)}")
    try:
        return RunParams(**values)
    except InvalidRunParams as exc:
        raise InvalidRunParams(f"{RUN_DEFAULTS_ENV}: {exc}") from None


def dag_params(defaults: RunParams | None = None) -> dict[str, Any]:
    """The DAG's Params: ``defaults`` (else :func:`run_defaults`), each with its JSON schema."""
    from airflow.sdk import Param

    defaults = defaults or run_defaults()
    return {name: Param(getattr(defaults, name), **schema) for name, schema in param_schemas().items()}
