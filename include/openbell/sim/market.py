"""A deterministic synthetic market: 1-minute bars for any symbol and NYSE session.

A few factors (broad market, tech, small caps, financials, energy, short-term volatility) drive every
symbol. A session's bars depend only on ``(seed, symbol, date)``:

* daily: each factor has an overnight gap and an intraday return per session; a symbol's log price
  follows ``leverage * factor`` plus tracking noise, pulled gently back to its base price so levels
  stay plausible over decades;
* intraday: the factor's minute path is a Brownian bridge to that day's intraday return, with a
  U-shaped volatility profile; a leveraged ETF's path is ``leverage`` times its factor's path plus a
  small bridge of tracking noise, so inverse pairs (TQQQ/SQQQ, ...) move against each other;
* volume is U-shaped over the session and rises with the size of the minute's move; ``trade_count``
  and ``vwap`` are filled; OHLC are consistent and prices positive.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from datetime import date
from functools import lru_cache

import numpy as np
import pandas as pd

from openbell.sim.playback import played_sessions, session_minutes, session_number, sessions_between, to_utc_ns
from openbell.sim.symbols import LISTINGS

NS_PER_MIN = 60_000_000_000


@dataclass(frozen=True)
class Factor:
    """A return driver: ``beta`` times the broad market plus its own noise (daily sigmas)."""

    beta: float
    gap_sigma: float
    day_sigma: float
    drift: float = 0.0


FACTORS: dict[str, Factor] = {
    "us": Factor(beta=0.0, gap_sigma=0.004, day_sigma=0.009, drift=0.0002),
    "tech": Factor(beta=1.2, gap_sigma=0.002, day_sigma=0.005),
    "small": Factor(beta=1.1, gap_sigma=0.002, day_sigma=0.006),
    "fin": Factor(beta=1.0, gap_sigma=0.002, day_sigma=0.006),
    "energy": Factor(beta=0.6, gap_sigma=0.004, day_sigma=0.010),
    "vol": Factor(beta=-3.5, gap_sigma=0.010, day_sigma=0.020, drift=-0.002),
}


@dataclass(frozen=True)
class SymbolSpec:
    """How one symbol follows its factor."""

    symbol: str
    factor: str
    leverage: float
    base_price: float
    base_volume: float  # average shares per minute
    noise: float  # daily sigma of tracking / idiosyncratic noise
    exchange: str = "ARCA"
    name: str = ""


def _etf(sym: str, factor: str, lev: float, price: float, vol: float, name: str) -> SymbolSpec:
    return SymbolSpec(sym, factor, lev, price, vol, 0.0015 * abs(lev), LISTINGS.get(sym, "ARCA"), name)


UNIVERSE: dict[str, SymbolSpec] = {
    s.symbol: s
    for s in (
        _etf("SPY", "us", 1.0, 660.0, 120_000, "SPDR S&P 500 ETF Trust"),
        _etf("QQQ", "tech", 1.0, 600.0, 80_000, "Invesco QQQ Trust"),
        _etf("IWM", "small", 1.0, 240.0, 60_000, "iShares Russell 2000 ETF"),
        _etf("XLF", "fin", 1.0, 52.0, 90_000, "Financial Select Sector SPDR Fund"),
        _etf("XLE", "energy", 1.0, 88.0, 30_000, "Energy Select Sector SPDR Fund"),
        _etf("SSO", "us", 2.0, 110.0, 8_000, "ProShares Ultra S&P500"),
        _etf("SDS", "us", -2.0, 15.0, 15_000, "ProShares UltraShort S&P500"),
        _etf("TQQQ", "tech", 3.0, 105.0, 150_000, "ProShares UltraPro QQQ"),
        _etf("SQQQ", "tech", -3.0, 14.0, 200_000, "ProShares UltraPro Short QQQ"),
        _etf("TNA", "small", 3.0, 45.0, 20_000, "Direxion Daily Small Cap Bull 3X Shares"),
        _etf("TZA", "small", -3.0, 8.0, 30_000, "Direxion Daily Small Cap Bear 3X Shares"),
        _etf("FAS", "fin", 3.0, 170.0, 5_000, "Direxion Daily Financial Bull 3X Shares"),
        _etf("FAZ", "fin", -3.0, 4.2, 8_000, "Direxion Daily Financial Bear 3X Shares"),
        _etf("ERX", "energy", 2.0, 55.0, 4_000, "Direxion Daily Energy Bull 2X Shares"),
        _etf("ERY", "energy", -2.0, 22.0, 2_000, "Direxion Daily Energy Bear 2X Shares"),
        _etf("UVXY", "vol", 1.5, 12.0, 60_000, "ProShares Ultra VIX Short-Term Futures ETF"),
        _etf("SVXY", "vol", -0.5, 48.0, 10_000, "ProShares Short VIX Short-Term Futures ETF"),
        SymbolSpec("AAPL", "tech", 1.1, 265.0, 100_000, 0.012, "NASDAQ", "Apple Inc. Common Stock"),
        SymbolSpec("MSFT", "tech", 1.0, 500.0, 40_000, 0.010, "NASDAQ", "Microsoft Corporation Common Stock"),
    )
}

LEVERAGED = ("ERX", "ERY", "FAS", "FAZ", "SDS", "SSO", "SQQQ", "SVXY", "TNA", "TQQQ", "TZA", "UVXY")
INVERSE_PAIRS = (("TQQQ", "SQQQ"), ("SSO", "SDS"), ("TNA", "TZA"), ("FAS", "FAZ"), ("ERX", "ERY"),
                 ("SVXY", "UVXY"))


def spec_for(symbol: str) -> SymbolSpec:
    """The spec of a known symbol, or a deterministic broad-market stock for any other name."""
    symbol = symbol.upper()
    if symbol in UNIVERSE:
        return UNIVERSE[symbol]
    h = _crc(symbol)
    return SymbolSpec(symbol, "us", 0.8 + (h % 60) / 100, 20.0 + h % 280, 5_000.0 + h % 40_000, 0.015,
                      "NYSE", f"{symbol} (synthetic)")


@dataclass
class SessionBars:
    """One symbol's 1-minute bars for one session, as column arrays (``t`` = bar start, ns UTC)."""

    t: np.ndarray
    o: np.ndarray
    h: np.ndarray
    l: np.ndarray  # noqa: E741
    c: np.ndarray
    v: np.ndarray
    n: np.ndarray
    vw: np.ndarray

    def __len__(self) -> int:
        return len(self.t)

    def take(self, idx: slice | np.ndarray) -> SessionBars:
        return SessionBars(*(getattr(self, k)[idx] for k in ("t", "o", "h", "l", "c", "v", "n", "vw")))


def _crc(text: str) -> int:
    return zlib.crc32(text.encode())


def rng(seed: int, *parts: str | int) -> np.random.Generator:
    """A generator that depends only on ``seed`` and ``parts`` (names or integers)."""
    key = [seed & 0xFFFFFFFF] + [p if isinstance(p, int) else _crc(p) for p in parts]
    return np.random.default_rng(np.random.SeedSequence(key))


@lru_cache(maxsize=64)
def _factor_daily(seed: int, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(gap, intraday) log returns of a factor for every calendar session."""
    f = FACTORS[name]
    z = rng(seed, "daily", name).standard_normal((len(played_sessions()), 2))
    gap = f.gap_sigma * z[:, 0] + f.drift / 2
    intra = f.day_sigma * z[:, 1] + f.drift / 2
    if name != "us":
        us_gap, us_intra = _factor_daily(seed, "us")
        gap = gap + f.beta * us_gap
        intra = intra + f.beta * us_intra
    return gap, intra


@lru_cache(maxsize=256)
def _symbol_daily(seed: int, symbol: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(log level before each session's open gap, gap, intraday noise end) for every session."""
    spec = spec_for(symbol)
    fgap, fintra = _factor_daily(seed, spec.factor)
    z = rng(seed, "daily-sym", symbol).standard_normal((len(fgap), 2))
    noise_end = spec.noise * z[:, 1]
    raw_gap = spec.leverage * fgap + 0.3 * spec.noise * z[:, 0]
    raw_intra = spec.leverage * fintra + noise_end
    kappa = 0.01
    start = np.empty(len(fgap))
    gap = np.empty(len(fgap))
    x = 0.0
    for i in range(len(fgap)):  # level pulled back toward the base price
        start[i] = x
        g = float(raw_gap[i]) - kappa * x
        gap[i] = g
        x = x + g + float(raw_intra[i])
    return start, gap, noise_end


def volume_shape(n: int) -> np.ndarray:
    """The U-shaped intraday activity profile of an ``n``-minute session, with mean 1."""
    t = np.arange(n, dtype=float)
    shape = 1.0 + 2.0 * np.exp(-t / 20.0) + 1.5 * np.exp(-(n - 1 - t) / 15.0)
    return shape / shape.mean()


def _weights(n: int) -> np.ndarray:
    t = np.arange(n, dtype=float)
    w = 1.0 + 1.2 * np.exp(-t / 25.0) + 0.6 * np.exp(-(n - 1 - t) / 30.0)
    return w / np.sqrt(np.sum(w * w))


def _bridge(z: np.ndarray, w: np.ndarray, sigma: float, target: float) -> np.ndarray:
    """A path of n minute closes whose increments have variance (sigma*w)^2, ending at ``target``."""
    steps = sigma * w * z
    walk = np.cumsum(steps)
    var = np.cumsum(w * w)
    return walk - (var / var[-1]) * (walk[-1] - target)


def _factor_path(seed: int, name: str, i: int, day: date, n: int, w: np.ndarray) -> np.ndarray:
    f = FACTORS[name]
    _, intra = _factor_daily(seed, name)
    z = rng(seed, "intraday", name, day.toordinal()).standard_normal(n)
    if name == "us":
        return _bridge(z, w, f.day_sigma, float(intra[i]))
    _, us_intra = _factor_daily(seed, "us")
    own_target = float(intra[i]) - f.beta * float(us_intra[i])
    return f.beta * _factor_path(seed, "us", i, day, n, w) + _bridge(z, w, f.day_sigma, own_target)


def round_prices(x: np.ndarray) -> np.ndarray:
    """Cents at or above $1, hundredths of a cent below."""
    return np.where(x >= 1.0, np.round(x, 2), np.round(x, 4))


def synthetic_session(symbol: str, day: date, seed: int = 0) -> SessionBars:
    """The synthetic regular-hours 1-minute bars of ``symbol`` on session ``day``."""
    i = session_number(day)
    if i is None:
        raise ValueError(f"{day.isoformat()} is not an NYSE session")
    sess = played_sessions()[i]
    n = session_minutes(sess)
    spec = spec_for(symbol)
    w = _weights(n)
    start, gap, noise_end = _symbol_daily(seed, spec.symbol)
    fpath = _factor_path(seed, spec.factor, i, day, n, w)
    z = rng(seed, "intraday-sym", spec.symbol, day.toordinal()).standard_normal((n, 5))
    path = spec.leverage * fpath + _bridge(z[:, 0], w, spec.noise, float(noise_end[i]))
    open_px = spec.base_price * np.exp(start[i] + gap[i])
    closes = open_px * np.exp(path)
    opens = np.concatenate(([open_px], closes[:-1]))
    fac = FACTORS[spec.factor]
    fsig = fac.day_sigma if spec.factor == "us" else np.hypot(fac.day_sigma, fac.beta * FACTORS["us"].day_sigma)
    minute_sigma = (abs(spec.leverage) * fsig + spec.noise) * w
    hi = np.maximum(opens, closes) * np.exp(np.abs(z[:, 1]) * 0.5 * minute_sigma)
    lo = np.minimum(opens, closes) * np.exp(-np.abs(z[:, 2]) * 0.5 * minute_sigma)
    o, c = round_prices(opens), round_prices(closes)
    h = np.maximum(round_prices(hi), np.maximum(o, c))
    low = np.minimum(round_prices(lo), np.minimum(o, c))
    low = np.maximum(low, np.where(low >= 1.0, 0.01, 0.0001))
    shape = volume_shape(n)
    move = np.abs(np.diff(np.concatenate(([0.0], path)))) / np.maximum(minute_sigma, 1e-9)
    vol = spec.base_volume * shape * np.exp(0.35 * z[:, 3] - 0.06) * (0.7 + 0.3 * np.minimum(move, 4.0))
    v = np.maximum(1, np.round(vol)).astype(np.int64)
    size = 100.0 * np.exp(0.2 * z[:, 4])
    cnt = np.maximum(1, np.round(v / size)).astype(np.int64)
    vw = np.clip(np.round((o + h + low + c) / 4.0, 4), low, h)
    t = to_utc_ns(sess.open) + np.arange(n, dtype=np.int64) * NS_PER_MIN
    return SessionBars(t, o, h, low, c, v, cnt, vw)


def to_frame(symbol: str, bars: SessionBars) -> pd.DataFrame:
    """One symbol's bars as a DataFrame with the public column names."""
    return pd.DataFrame(
        {
            "timestamp": pd.to_datetime(bars.t, utc=True),
            "symbol": symbol,
            "open": bars.o,
            "high": bars.h,
            "low": bars.l,
            "close": bars.c,
            "volume": bars.v,
            "trade_count": bars.n,
            "vwap": bars.vw,
        }
    )


def session_bars(symbols: list[str] | tuple[str, ...], day: date | str, seed: int = 0) -> pd.DataFrame:
    """Synthetic 1-minute bars of ``symbols`` for one session, sorted by symbol then time.

    Columns: timestamp (UTC, bar start), symbol, open, high, low, close, volume, trade_count, vwap.
    Deterministic for (seed, symbol, date). ValueError if ``day`` is not an NYSE session.
    """
    d = date.fromisoformat(day) if isinstance(day, str) else day
    frames = [to_frame(s.upper(), synthetic_session(s, d, seed)) for s in sorted({s.upper() for s in symbols})]
    if not frames:
        return to_frame("", SessionBars(*(np.empty(0) for _ in range(8))))
    return pd.concat(frames, ignore_index=True)


def bars_between(symbols: list[str] | tuple[str, ...], start: date | str, end: date | str,
                 seed: int = 0) -> pd.DataFrame:
    """Synthetic 1-minute bars of ``symbols`` for every session from ``start`` to ``end`` inclusive."""
    s = date.fromisoformat(start) if isinstance(start, str) else start
    e = date.fromisoformat(end) if isinstance(end, str) else end
    frames = [session_bars(symbols, sess.date, seed) for sess in sessions_between(s, e)]
    if not frames:
        return session_bars([], s)
    return pd.concat(frames, ignore_index=True).sort_values(["symbol", "timestamp"], ignore_index=True)
