"""The strategy's output is checked, never repaired: a mapping of universe symbols to finite weights, no short
without the run allowing it, the gross within the limit; anything else is refused with its kind and a one-line
reason naming the symbol or the figure. The per-symbol cap is left to the risk gate."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from openbell.strategy import RiskLimits
from openbell.trading.targets_check import KINDS, TargetsRefused, check_targets

UNIVERSE = frozenset({"SSO", "TQQQ", "SQQQ"})
LONG_ONLY = RiskLimits(max_weight=0.25, max_gross=1.0)


def test_a_clear_output_is_taken_as_floats_and_a_symbol_left_out_counts_as_zero() -> None:
    targets = {"SSO": 0.25, "TQQQ": np.float32(0.5), "SQQQ": 0}
    assert check_targets(targets, UNIVERSE, LONG_ONLY) == {"SSO": 0.25, "TQQQ": 0.5, "SQQQ": 0.0}
    assert check_targets({}, UNIVERSE, LONG_ONLY) == {}
    assert check_targets({"SSO": np.int64(1)}, UNIVERSE, LONG_ONLY) == {"SSO": 1.0}


def test_a_weight_over_max_weight_is_the_gates_to_clip_not_a_refusal() -> None:
    assert check_targets({"SSO": 0.9}, UNIVERSE, LONG_ONLY) == {"SSO": 0.9}


@pytest.mark.parametrize(("targets", "kind", "reason"), [
    ({"SSO": math.nan}, "not_finite", "SSO: weight nan is not a finite number"),
    ({"SSO": 0.1, "TQQQ": math.inf}, "not_finite", "TQQQ: weight inf is not a finite number"),
    ({"SSO": np.float64(-math.inf)}, "not_finite", "SSO: weight -inf is not a finite number"),
    ({"SSO": None}, "not_finite", "SSO: weight None is not a finite number"),
    ({"SSO": "0.5"}, "not_finite", "SSO: weight '0.5' is not a finite number"),
    ({"SSO": True}, "not_finite", "SSO: weight True is not a finite number"),
    ({"SSO": -0.1}, "short", "SSO: weight -0.1 is negative and the run allows no shorts"),
    ({"SSO": 0.6, "TQQQ": 0.5}, "over_gross", "gross 1.1 is over the gross limit 1"),
    ({"XYZ": 0.1}, "not_in_universe", "a weight for 'XYZ', which is not in the universe"),
    ({"sso": 0.1}, "not_in_universe", "a weight for 'sso', which is not in the universe"),
    ({1: 0.1}, "not_in_universe", "a weight for 1, which is not in the universe"),
    ([0.5, 0.5], "not_a_mapping", "on_minute returned list, not a mapping of symbol to weight"),
    (None, "not_a_mapping", "on_minute returned NoneType, not a mapping of symbol to weight"),
])
def test_an_unclear_output_is_refused_with_its_kind_and_reason(targets: Any, kind: str, reason: str) -> None:
    with pytest.raises(TargetsRefused) as info:
        check_targets(targets, UNIVERSE, LONG_ONLY)
    assert (info.value.kind, info.value.reason, str(info.value)) == (kind, reason, reason)
    assert kind in KINDS


def test_shorts_pass_when_the_run_allows_them_and_count_in_the_gross() -> None:
    shorts = RiskLimits(max_gross=1.0, allow_short=True)
    assert check_targets({"SSO": -0.4, "TQQQ": 0.5}, UNIVERSE, shorts) == {"SSO": -0.4, "TQQQ": 0.5}
    with pytest.raises(TargetsRefused, match=r"gross 1\.1 is over the gross limit 1$"):
        check_targets({"SSO": -0.6, "TQQQ": 0.5}, UNIVERSE, shorts)


def test_float_rounding_is_tolerated_and_a_negative_zero_stays_out_of_the_book() -> None:
    tenths = {"SSO": 0.1, "TQQQ": 0.2, "SQQQ": 0.7 + 1e-12}
    assert check_targets(tenths, UNIVERSE, LONG_ONLY) == tenths
    assert check_targets({"SSO": -1e-12}, UNIVERSE, LONG_ONLY) == {"SSO": 0.0}
    with pytest.raises(TargetsRefused, match=r"^gross 1\.000001 is over"):
        check_targets({"SSO": 0.5, "TQQQ": 0.500001}, UNIVERSE, LONG_ONLY)
