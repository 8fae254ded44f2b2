"""The built-ins' live return window holds the last rows of the prepared arrays, however many minutes it took."""

from __future__ import annotations

import numpy as np
from strategy_synth import make_bars

from openbell.strategy import DEFAULT_UNIVERSE
from openbell.strategy.data import prepare
from openbell.strategy.rolling import ReturnWindow


def test_the_window_is_the_last_rows_of_the_prepared_arrays():
    data = prepare(make_bars(2, seed=3), DEFAULT_UNIVERSE)
    size = 37
    window = ReturnWindow(len(DEFAULT_UNIVERSE), size)
    assert not window.ret.any() and not window.has.any() and window.first_row == -size
    for t in range(len(data.times)):
        window.push(int(data.day[t]), data.open[t], data.close[t], data.has[t])
        lo = max(0, t + 1 - size)
        np.testing.assert_allclose(window.ret[size - (t + 1 - lo):], data.ret[lo : t + 1], rtol=0, atol=1e-15)
        np.testing.assert_array_equal(window.has[size - (t + 1 - lo):], data.has[lo : t + 1])
        assert not window.ret[: size - (t + 1 - lo)].any()  # before the first minute: nothing
        np.testing.assert_array_equal(window.fresh(int(data.day[t])), data.fresh[t])
    assert window.rows == len(data.times) > 20 * size and window.first_row == len(data.times) - size
