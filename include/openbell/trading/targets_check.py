"""The strategy's output checked before the risk limits: what it asks for must be clear, or nothing trades.

``on_minute`` returns a mapping of universe symbol to target weight; a universe symbol left out counts as 0
(docs/strategies.md). :func:`check_targets` refuses the whole output (:class:`TargetsRefused`, with its kind
and a one-line reason naming the symbol or the figure) when it is not a mapping, names a symbol outside the
universe, gives a weight that is not a finite number, a negative weight while the run allows no shorts, or a
gross (the sum of ``|w|``) above the gross limit. Nothing is repaired here: a NaN set to 0 would sell the
position. The per-symbol cap (``max_weight``) is the deployment's and stays the risk gate's to clip.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping

import numpy as np

from openbell.strategy import RiskLimits

TOLERANCE = 1e-9  # a weight this far below 0, or a gross this far over the limit, is float rounding
KINDS = ("not_a_mapping", "not_in_universe", "not_finite", "short", "over_gross")


class TargetsRefused(ValueError):
    """The strategy's output is refused: ``kind`` (one of :data:`KINDS`) and a one-line ``reason``."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


def check_targets(targets: object, universe: Collection[str], limits: RiskLimits) -> dict[str, float]:
    """``targets`` as floats when every rule holds (a negative within :data:`TOLERANCE` of 0 is 0 without
    shorts); :class:`TargetsRefused` for the first rule broken."""
    if not isinstance(targets, Mapping):
        raise TargetsRefused("not_a_mapping",
                             f"on_minute returned {type(targets).__name__}, not a mapping of symbol to weight")
    out: dict[str, float] = {}
    for symbol, raw in targets.items():
        if not isinstance(symbol, str) or symbol not in universe:
            raise TargetsRefused("not_in_universe", f"a weight for {symbol!r}, which is not in the universe")
        weight = _finite(raw)
        if weight is None:
            raise TargetsRefused("not_finite", f"{symbol}: weight {_shown(raw)} is not a finite number")
        if weight < 0 and not limits.allow_short:
            if weight < -TOLERANCE:
                raise TargetsRefused("short", f"{symbol}: weight {weight:g} is negative and the run allows no shorts")
            weight = 0.0
        out[symbol] = weight
    gross = math.fsum(abs(w) for w in out.values())
    if gross > limits.max_gross + TOLERANCE:
        raise TargetsRefused("over_gross", f"gross {gross:.10g} is over the gross limit {limits.max_gross:g}")
    return out


def _number(raw: object) -> bool:
    """An int or a float (numpy's too), never a bool."""
    return isinstance(raw, int | float | np.integer | np.floating) and not isinstance(raw, bool | np.bool_)


def _finite(raw: object) -> float | None:
    """``raw`` as a float when it is a finite number; None otherwise."""
    if not _number(raw):
        return None
    value = float(raw)  # type: ignore[arg-type]
    return value if math.isfinite(value) else None


def _shown(raw: object) -> str:
    """``raw`` in a reason: a number as a plain float (``nan``, ``-inf``), anything else as its repr."""
    return repr(float(raw)) if _number(raw) else repr(raw)  # type: ignore[arg-type]
