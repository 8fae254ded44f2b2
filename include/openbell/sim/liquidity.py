"""IEX-like sparseness: on the IEX feed a minute has a bar only when IEX saw a trade in it.

Each symbol has a share of regular-hours minutes without an IEX trade (:func:`no_trade_share`). Trades
arrive like a Poisson process whose rate follows the session's U-shaped activity, so empty minutes
cluster at midday; the rate is solved per symbol so the day's empty share matches the target on
average. Which minutes are empty depends only on ``(seed, symbol, date)``.
"""

from __future__ import annotations

import math
from datetime import date
from functools import lru_cache

import numpy as np

from openbell.sim.market import rng, spec_for, volume_shape

# Share of regular-hours minutes with no IEX trade, for every symbol of the synthetic universe; the inverse
# leveraged ETFs are the thinnest. Other symbols get a share from their volume (up to 45%).
NO_TRADE_SHARE: dict[str, float] = {
    "ERY": 0.40, "FAZ": 0.30, "SDS": 0.20, "TZA": 0.12, "SQQQ": 0.05,
    "ERX": 0.15, "FAS": 0.10, "SSO": 0.10, "SVXY": 0.08, "TNA": 0.04, "UVXY": 0.03, "TQQQ": 0.005,
    "XLE": 0.02, "XLF": 0.01, "IWM": 0.005, "SPY": 0.0, "QQQ": 0.0, "AAPL": 0.0, "MSFT": 0.0,
}


def no_trade_share(symbol: str) -> float:
    """The average share of minutes in which ``symbol`` has no IEX trade."""
    symbol = symbol.upper()
    if symbol in NO_TRADE_SHARE:
        return NO_TRADE_SHARE[symbol]
    return round(min(0.45, 0.45 * math.exp(-spec_for(symbol).base_volume / 12_000.0)), 4)


@lru_cache(maxsize=256)
def _empty_probability(share: float, n: int) -> np.ndarray:
    """Per-minute probability of no trade, ``exp(-rate * shape)``, with mean ``share``."""
    shape = volume_shape(n)
    if share <= 0:
        return np.zeros(n)
    lo, hi = 0.0, 100.0
    for _ in range(80):  # the mean falls as the rate rises: bisect on the rate
        mid = (lo + hi) / 2
        if float(np.exp(-mid * shape).mean()) > share:
            lo = mid
        else:
            hi = mid
    return np.exp(-hi * shape)


def no_trade_minutes(symbol: str, day: date, seed: int, n: int) -> np.ndarray:
    """Boolean mask of the session's ``n`` minutes in which ``symbol`` has no IEX trade."""
    p = _empty_probability(no_trade_share(symbol), n)
    u = rng(seed, "iex-trades", symbol.upper(), day.toordinal()).random(n)
    return u < p
