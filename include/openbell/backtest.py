"""Vectorized backtest and minute-by-minute replay of a strategy over a long bar frame.

``run`` computes every minute's targets at once with the strategy's vectorized twin, or by replaying
``on_minute`` over the prepared arrays when it has none (:func:`openbell.strategy.targets`); ``replay`` feeds
the bars through ``on_minute`` exactly as the live loop does. The two agree minute for minute.

Execution model: the targets decided after minute t are traded at t's close and earn the next minutes'
close-to-close returns (a symbol without a bar carries its price). Every session starts flat and is
liquidated at its last bar's close; nothing is held overnight. Costs are ``cost_bps`` per unit of
turnover (sum of absolute weight changes). With ``limits``, targets are clipped like
:class:`~openbell.strategy.risk.RiskGate` does (a short of a symbol outside ``limits.shortable`` set to 0
first) and the daily loss latch flattens the rest of a session.

``run_shares`` trades shares instead of weights: each minute the limited targets go through the live
:class:`~openbell.policy.OrderPolicy` (whole shares or the policy's ``fractional`` symbols in fractions, shorts
when ``limits.allow_short``, ``min_notional``, band) and fill at the minute's close, a limit order too, and a
notional buy as a market order of its ``qty`` (the shares its dollars buy at the decided price), paying
``cost_bps`` on the traded notional (:func:`trade_shares` trades any targets so, e.g. a day's replay with its
parameter versions, closing at the trading cut-off). The vectorized ``run`` is the fast approximation
the optimizer uses; the two differ by the rounding to whole shares and the orders ``min_notional`` leaves out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel

from openbell.policy import OrderIntent, OrderPolicy
from openbell.strategy import DEFAULT_UNIVERSE, Bar, Strategy, strategy_class, validate_params
from openbell.strategy import targets as strategy_targets
from openbell.strategy.data import MarketArrays, prepare
from openbell.strategy.risk import RiskLimits, clip_weights, loss_breached

MINUTES_PER_YEAR = 390 * 252


@dataclass(frozen=True)
class BacktestResult:
    """Outcome over the evaluated sessions (after the warmup ones)."""

    strategy: str
    params: dict[str, Any]
    targets: pd.DataFrame  # minute x symbol, strategy output before risk limits
    weights: pd.DataFrame  # minute x symbol, what is held after each minute (limits, liquidation, latch)
    returns: pd.Series  # net simple return per minute
    equity: pd.Series  # starts at 1.0 before the first evaluated minute
    turnover: pd.Series  # sum of absolute weight changes per minute
    score: float  # annualized Sharpe of the minute returns (0 when they do not vary)
    total_return: float
    max_drawdown: float
    sessions: list[int] = field(default_factory=list)  # YYYYMMDD of evaluated sessions
    stopped_sessions: list[int] = field(default_factory=list)  # sessions the loss latch flattened


def sharpe(n: float, s1: float, s2: float) -> float:
    """Annualized Sharpe from the count, sum and sum of squares of minute returns."""
    if n < 2:
        return 0.0
    mean = s1 / n
    var = (s2 - s1 * s1 / n) / (n - 1)
    if var <= 1e-24:
        return 0.0
    return float(mean / math.sqrt(var) * math.sqrt(MINUTES_PER_YEAR))


def simulate(data: MarketArrays, targets: np.ndarray, cost_bps: float,
             limits: RiskLimits | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[int]]:
    """(net returns (T,), turnover (T,), held weights (T,N), latched session numbers) of targets."""
    if not (isinstance(cost_bps, int | float) and math.isfinite(cost_bps) and cost_bps >= 0):
        raise ValueError(f"cost_bps must be a non-negative number, got {cost_bps!r}")
    w = limited(targets, limits, data.symbols)
    starts, ends = data.session_starts[:-1], data.session_starts[1:] - 1
    w[ends] = 0.0
    net, turnover = _pnl(data, w, starts, cost_bps)
    latched: list[int] = []
    if limits is not None and limits.daily_loss_limit is not None:
        gross = net + turnover * cost_bps / 1e4
        for s, (a, b) in enumerate(zip(starts, ends + 1, strict=True)):
            eq_prev = np.r_[1.0, np.cumprod(1.0 + net[a:b])[:-1]]
            hit = np.flatnonzero(eq_prev * (1.0 + gross[a:b]) < 1.0 - limits.daily_loss_limit)
            if len(hit):
                w[a + hit[0] : b] = 0.0
                latched.append(s)
        if latched:
            net, turnover = _pnl(data, w, starts, cost_bps)
    return net, turnover, w, latched


def limited(raw: np.ndarray, limits: RiskLimits | None, symbols: Sequence[str]) -> np.ndarray:
    """Targets (T,N on ``symbols``) within ``limits`` as :class:`~openbell.strategy.risk.RiskGate` applies them
    (:func:`~openbell.strategy.risk.clip_weights`)."""
    if limits is None:
        return np.where(np.isfinite(raw), raw, 0.0)
    return clip_weights(raw, limits, symbols)


def _pnl(data: MarketArrays, w: np.ndarray, starts: np.ndarray,
         cost_bps: float) -> tuple[np.ndarray, np.ndarray]:
    prev = np.vstack([np.zeros((1, w.shape[1])), w[:-1]])
    prev[starts] = 0.0
    turnover = np.abs(w - prev).sum(axis=1)
    return (prev * data.pnl).sum(axis=1) - turnover * (cost_bps / 1e4), turnover


def vector_targets(strategy_name: str, params: Mapping[str, Any] | BaseModel | None, data: MarketArrays,
                   cache: dict[Any, Any] | None = None) -> np.ndarray:
    """Targets (T,N) of a strategy (any spelling :func:`~openbell.strategy.resolve` accepts) on prepared arrays:
    its vectorized twin's, or ``on_minute`` replayed when it has none."""
    p = validate_params(strategy_name, params)
    return strategy_targets(strategy_class(strategy_name), data, p, cache)


def run(strategy_name: str, params: Mapping[str, Any] | BaseModel | None, bars: pd.DataFrame, *,
        warmup_sessions: int = 1, cost_bps: float = 1.0, limits: RiskLimits | None = None,
        universe: Sequence[str] = DEFAULT_UNIVERSE) -> BacktestResult:
    """Backtest over ``bars``; the first ``warmup_sessions`` sessions only warm the signals up."""
    p = validate_params(strategy_name, params)
    data = prepare(bars, tuple(universe))
    if not isinstance(warmup_sessions, int) or not 0 <= warmup_sessions < data.n_sessions:
        raise ValueError(
            f"warmup_sessions must be an int in [0, {data.n_sessions - 1}] for {data.n_sessions} session(s),"
            f" got {warmup_sessions!r}"
        )
    raw = vector_targets(strategy_name, p, data)
    net, turnover, held, latched = simulate(data, raw.copy(), cost_bps, limits)
    first = int(data.session_starts[warmup_sessions])
    index = data.times[first:]
    cols = list(data.symbols)
    r = net[first:]
    equity = np.cumprod(1.0 + r)
    peak = np.maximum.accumulate(np.r_[1.0, equity])[1:]
    return BacktestResult(
        strategy=strategy_name,
        params=p.model_dump(),
        targets=pd.DataFrame(raw[first:], index=index, columns=cols),
        weights=pd.DataFrame(held[first:], index=index, columns=cols),
        returns=pd.Series(r, index=index, name="return"),
        equity=pd.Series(equity, index=index, name="equity"),
        turnover=pd.Series(turnover[first:], index=index, name="turnover"),
        score=sharpe(len(r), float(r.sum()), float((r * r).sum())),
        total_return=float(equity[-1] - 1.0),
        max_drawdown=float((1.0 - equity / peak).max()),
        sessions=data.session_days()[warmup_sessions:],
        stopped_sessions=[data.session_days()[s] for s in latched if s >= warmup_sessions],
    )


ORDER_COLUMNS = ["time", "symbol", "side", "qty", "price", "target_weight", "notional", "cost", "kind"]


@dataclass(frozen=True)
class ShareResult:
    """Share-level outcome over the evaluated sessions; each session starts flat with ``cash``."""

    strategy: str
    params: dict[str, Any]
    cash: float
    orders: pd.DataFrame  # one row per order (ORDER_COLUMNS); kind "policy" or "close" (the session's last bar)
    positions: pd.DataFrame  # minute x symbol, shares held after the minute's fills
    equity: pd.Series  # after each minute's fills and costs, marked at its close; back to ``cash`` each session
    pnl: pd.Series  # change of equity per minute (a session's first minute against ``cash``)
    returns: pd.Series  # pnl over the equity before the minute
    session_pnl: pd.Series  # P&L per session (YYYYMMDD)
    total_pnl: float
    sessions: list[int] = field(default_factory=list)
    stopped_sessions: list[int] = field(default_factory=list)


def run_shares(strategy_name: str, params: Mapping[str, Any] | BaseModel | None, bars: pd.DataFrame, *,
               warmup_sessions: int = 1, cost_bps: float = 1.0, limits: RiskLimits | None = None,
               universe: Sequence[str] = DEFAULT_UNIVERSE, cash: float = 100_000.0,
               policy: OrderPolicy | None = None) -> ShareResult:
    """Backtest in shares: limits -> ``policy`` -> fills at each minute's close, as the live loop trades.

    The targets are :func:`vector_targets` (equal to ``on_minute``'s), traded by :func:`trade_shares`.
    """
    p = validate_params(strategy_name, params)
    _check_money(cash, cost_bps)
    data = prepare(bars, tuple(universe))
    _check_warmup(warmup_sessions, data)
    raw = vector_targets(strategy_name, p, data)
    return trade_shares(strategy_name, p.model_dump(), data, raw, warmup_sessions=warmup_sessions,
                        cost_bps=cost_bps, limits=limits, cash=cash, policy=policy)


def _check_money(cash: float, cost_bps: float) -> None:
    if not (isinstance(cash, int | float) and math.isfinite(cash) and cash > 0):
        raise ValueError(f"cash must be a positive number, got {cash!r}")
    if not (isinstance(cost_bps, int | float) and math.isfinite(cost_bps) and cost_bps >= 0):
        raise ValueError(f"cost_bps must be a non-negative number, got {cost_bps!r}")


def _check_warmup(warmup_sessions: int, data: MarketArrays) -> None:
    if not isinstance(warmup_sessions, int) or not 0 <= warmup_sessions < data.n_sessions:
        raise ValueError(
            f"warmup_sessions must be an int in [0, {data.n_sessions - 1}] for {data.n_sessions} session(s),"
            f" got {warmup_sessions!r}"
        )


def trade_shares(strategy_name: str, params: dict[str, Any], data: MarketArrays, raw: np.ndarray, *,
                 warmup_sessions: int = 1, cost_bps: float = 1.0, limits: RiskLimits | None = None,
                 cash: float = 100_000.0, policy: OrderPolicy | None = None,
                 close_at: Sequence[pd.Timestamp] | None = None) -> ShareResult:
    """Trade the targets ``raw`` (T,N on ``data``, before the risk limits) in shares, as the live loop does.

    Within a session the equity the loss latch and the policy see is the cash plus the positions at the
    minute's carried close, before the minute's orders. Every position is closed at the session's last bar,
    or, with ``close_at`` (one market time per evaluated session: the trading cut-off), at the close of the
    first minute ending at or after it; no order goes after that. ``strategy_name`` and ``params`` only label
    the result.
    """
    _check_money(cash, cost_bps)
    _check_warmup(warmup_sessions, data)
    if close_at is not None and len(close_at) != data.n_sessions - warmup_sessions:
        raise ValueError(f"close_at needs one time per evaluated session, got {len(close_at)}")
    policy = policy or OrderPolicy()
    within = limited(raw, limits, data.symbols)
    closes = pd.DataFrame(data.close).ffill().to_numpy()
    symbols, rate, first = data.symbols, cost_bps / 1e4, int(data.session_starts[warmup_sessions])
    held = np.zeros((len(data.times) - first, len(symbols)))
    equity = np.empty(len(data.times) - first)
    orders: list[tuple[Any, ...]] = []
    stopped: list[int] = []
    minute = pd.Timedelta(minutes=1)
    for s in range(warmup_sessions, data.n_sessions):
        a, b = int(data.session_starts[s]), int(data.session_starts[s + 1])
        until = None if close_at is None else pd.Timestamp(close_at[s - warmup_sessions])
        money, latched, closed = float(cash), False, False
        shares: dict[str, float] = {}
        for t in range(a, b):
            prices = {sym: float(px) for sym, px in zip(symbols, closes[t], strict=True) if px > 0}
            before = money + sum(q * prices[sym] for sym, q in shares.items())
            if limits is not None and not latched and loss_breached(limits, before, float(cash)):
                latched = True
                stopped.append(int(data.day[a]))
            if closed:
                intents: tuple[OrderIntent, ...] = ()
                kind = "close"
            elif t == b - 1 or (until is not None and data.times[t] + minute >= until):
                intents, kind, closed = policy.close_all(shares), "close", True
            else:
                targets = dict(zip(symbols, [0.0] * len(symbols) if latched else within[t].tolist(), strict=True))
                intents, kind = policy.decide(targets, before, prices, shares, None, symbols).intents, "policy"
            for o in intents:
                price = prices[o.symbol]
                signed = o.qty if o.side == "buy" else -o.qty
                money -= signed * price
                money -= o.qty * price * rate
                shares[o.symbol] = shares.get(o.symbol, 0.0) + signed
                orders.append((data.times[t], o.symbol, o.side, o.qty, price, o.target_weight, o.qty * price,
                               o.qty * price * rate, kind))
            equity[t - first] = money + sum(q * prices[sym] for sym, q in shares.items())
            held[t - first] = [shares.get(sym, 0.0) for sym in symbols]
    index = data.times[first:]
    starts = data.session_starts[warmup_sessions:-1] - first
    prev = np.r_[float(cash), equity[:-1]]
    prev[starts] = float(cash)
    ends = data.session_starts[warmup_sessions + 1 :] - 1 - first
    session_pnl = pd.Series(equity[ends] - float(cash), index=data.session_days()[warmup_sessions:], name="pnl")
    return ShareResult(
        strategy=strategy_name,
        params=params,
        cash=float(cash),
        orders=pd.DataFrame(orders, columns=ORDER_COLUMNS),
        positions=pd.DataFrame(held, index=index, columns=list(symbols)),
        equity=pd.Series(equity, index=index, name="equity"),
        pnl=pd.Series(equity - prev, index=index, name="pnl"),
        returns=pd.Series((equity - prev) / prev, index=index, name="return"),
        session_pnl=session_pnl,
        total_pnl=float(session_pnl.sum()),
        sessions=data.session_days()[warmup_sessions:],
        stopped_sessions=stopped,
    )


def replay(strategy: Strategy, bars: pd.DataFrame, *, warmup_sessions: int = 0,
           warmup_until: pd.Timestamp | None = None) -> pd.DataFrame:
    """Targets (minute x symbol) from feeding ``bars`` through ``on_minute`` as the live loop does.

    Bars before the first ``warmup_sessions`` sessions' end, or before ``warmup_until`` (e.g. a restart
    mid-session), go through ``strategy.warmup`` instead; pass a fresh strategy.
    """
    data = prepare(bars, strategy.universe)
    if not isinstance(warmup_sessions, int) or not 0 <= warmup_sessions < data.n_sessions:
        raise ValueError(f"warmup_sessions must be in [0, {data.n_sessions - 1}], got {warmup_sessions!r}")
    ts = pd.to_datetime(bars["timestamp"]).dt.tz_convert("UTC")
    split = data.times[int(data.session_starts[warmup_sessions])]
    if warmup_until is not None:
        split = pd.Timestamp(warmup_until)
        if split.tzinfo is None:
            raise ValueError("warmup_until must be timezone-aware")
    if (ts < split).any():
        strategy.warmup(bars[(ts < split).to_numpy()])
    live = bars[(ts >= split).to_numpy()].assign(timestamp=ts[ts >= split]).sort_values("timestamp")
    cols = {c: (live[c] if c in live else live["close"]) for c in ("open", "high", "low", "close")}
    volume = live["volume"] if "volume" in live else pd.Series(0.0, index=live.index)
    minutes: list[pd.Timestamp] = []
    rows: list[dict[str, float]] = []
    current: pd.Timestamp | None = None
    batch: dict[str, Bar] = {}
    for t, sym, o, h, lo, c, v in zip(live["timestamp"], live["symbol"], cols["open"], cols["high"],
                                      cols["low"], cols["close"], volume, strict=True):
        if current is not None and t != current:
            rows.append(strategy.on_minute(current.to_pydatetime(), batch))
            minutes.append(current)
            batch = {}
        current = t
        batch[sym] = Bar(sym, t.to_pydatetime(), float(o), float(h), float(lo), float(c), float(v))
    if current is not None:
        rows.append(strategy.on_minute(current.to_pydatetime(), batch))
        minutes.append(current)
    return pd.DataFrame(rows, index=pd.DatetimeIndex(minutes), columns=list(strategy.universe))
