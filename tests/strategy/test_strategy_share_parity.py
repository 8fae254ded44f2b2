"""Orders and P&L parity: the live loop's minute-by-minute path against the share-level backtest, and the
share-level backtest against the vectorized one."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
from strategy_synth import make_bars

from openbell import backtest
from openbell.policy import OrderIntent, OrderPolicy, working_sides
from openbell.strategy import Bar, RiskGate, RiskLimits, build
from openbell.strategy.data import prepare
from openbell.trading.portfolio import Fill, Portfolio

CASES = {
    "defaults": ({}, RiskLimits(), OrderPolicy(), 1.0),
    "latched": (  # trading noise at 5 bps trips a 2% daily loss limit on two of the three days
        {"top_k": 1, "threshold": 0.0, "exit_threshold": 10.0, "rebalance_minutes": 1, "lookback": 5,
         "vol_window": 10}, RiskLimits(max_weight=0.5, daily_loss_limit=0.02), OrderPolicy(min_notional=500.0), 5.0),
    "band-and-score": (
        {"top_k": 3, "threshold": 0.5, "rebalance_minutes": 1, "weighting": "score"},
        RiskLimits(max_weight=0.3, max_gross=0.8), OrderPolicy(min_notional=50.0, band=0.01), 2.0),
}
CASH = 100_000.0


@pytest.fixture(scope="module")
def bars() -> pd.DataFrame:
    return make_bars(4, seed=11)


@dataclass
class Replay:
    orders: pd.DataFrame
    equity: pd.Series
    stopped: list[int]


def live_replay(params: dict, bars: pd.DataFrame, limits: RiskLimits, policy: OrderPolicy, cost_bps: float,
                warmup_sessions: int = 1) -> Replay:
    """The live loop's path, minute by minute: prices from the bars, ``on_minute``, ``RiskGate.apply``, the
    order rules (``Portfolio.intents`` itself when the policy is the live one), each order filled at the
    minute's close; every session starts flat with ``CASH`` and closes everything at its last bar."""
    strategy = build("momentum_rotation", params)
    data = prepare(bars, strategy.universe)
    split = data.times[data.session_starts[warmup_sessions]]
    ts = pd.to_datetime(bars["timestamp"])
    strategy.warmup(bars[(ts < split).to_numpy()])
    prices = bars[(ts < split).to_numpy()].groupby("symbol")["close"].last().to_dict()
    live = bars[(ts >= split).to_numpy()]
    last_minutes = set(data.times[data.session_starts[warmup_sessions + 1 :] - 1])
    orders: list[tuple] = []
    equity: dict[pd.Timestamp, float] = {}
    stopped: list[int] = []
    portfolio, gate = None, None
    rate = cost_bps / 1e4
    for t, group in live.groupby("timestamp", sort=True):
        if portfolio is None:
            portfolio = Portfolio(cash=CASH, prices=dict(prices))
            gate = RiskGate(limits, universe=strategy.universe, day_start_equity=CASH)
        minute_bars = {r.symbol: Bar(r.symbol, t.to_pydatetime(), r.open, r.high, r.low, r.close, r.volume)
                       for r in group.itertuples()}
        for b in minute_bars.values():
            portfolio.prices[b.symbol] = b.close
        before = portfolio.equity()
        weights, _ = gate.apply(strategy.on_minute(t.to_pydatetime(), minute_bars), before)
        if t in last_minutes:
            intents = [OrderIntent(s, "sell" if q > 0 else "buy", abs(q), 0.0)
                       for s, q in sorted(portfolio.positions.items()) if q]
            intents.sort(key=lambda o: o.side != "sell")
        elif policy == OrderPolicy(min_notional=policy.min_notional):  # the live rules: the live code
            intents = portfolio.intents(weights, strategy.universe, policy.min_notional)
        else:
            sides = working_sides((w.symbol, w.signed_qty) for w in portfolio.working.values())
            held = {s: portfolio.expected(s) for s in {*portfolio.positions, *sides}}
            intents = list(policy.decide(weights, before, portfolio.prices, held, sides, strategy.universe).intents)
        for i, o in enumerate(intents):
            coid = f"ob-{t:%Y%m%d%H%M}-{i}-{o.symbol}"
            price = portfolio.prices[o.symbol]
            portfolio.add_working(coid, o, i)
            assert portfolio.on_fill(Fill(f"x-{coid}", coid, o.symbol, o.side, o.qty, price))
            portfolio.cash -= o.qty * price * rate
            orders.append((t, o.symbol, o.side, o.qty, price, o.target_weight))
        assert not portfolio.working
        equity[t] = portfolio.equity()
        if t in last_minutes:
            if gate.stopped:
                stopped.append(int(t.tz_convert("America/New_York").strftime("%Y%m%d")))
            prices, portfolio = portfolio.prices, None
    frame = pd.DataFrame(orders, columns=["time", "symbol", "side", "qty", "price", "target_weight"])
    return Replay(frame, pd.Series(equity), stopped)


@pytest.mark.parametrize("name", list(CASES))
def test_live_path_and_share_backtest_send_the_same_orders_and_make_the_same_pnl(bars, name):
    params, limits, policy, cost = CASES[name]
    live = live_replay(params, bars, limits, policy, cost)
    shares = backtest.run_shares("momentum_rotation", params, bars, warmup_sessions=1, cost_bps=cost,
                                 limits=limits, cash=CASH, policy=policy)
    exact = ["time", "symbol", "side", "qty", "price"]
    pd.testing.assert_frame_equal(shares.orders[exact], live.orders[exact])
    np.testing.assert_allclose(shares.orders["target_weight"], live.orders["target_weight"], rtol=0, atol=1e-9)
    assert live.equity.index.equals(shares.equity.index)
    np.testing.assert_allclose(shares.equity.to_numpy(), live.equity.to_numpy(), rtol=1e-12)
    assert shares.stopped_sessions == live.stopped
    # not vacuous: many orders, some of them cut by the order rules, and a P&L that moves
    assert len(live.orders) > 300 and shares.session_pnl.abs().min() > 100
    assert (shares.orders["qty"] == np.round(shares.orders["qty"])).all()
    days = shares.equity.index.tz_convert("America/New_York").strftime("%Y%m%d").astype(int)
    last = shares.equity.groupby(days).tail(1).index
    closes = set(shares.orders.loc[shares.orders["kind"] == "close", "time"])
    assert closes <= set(last) and closes  # a latched day may be flat before its last bar
    assert len(shares.stopped_sessions) == (2 if name == "latched" else 0)
    for day, pnl in shares.session_pnl.items():
        assert pnl == pytest.approx(live.equity[days == day].iloc[-1] - CASH, rel=1e-12, abs=1e-6)
    assert not shares.positions.groupby(days).tail(1).to_numpy().any()  # flat after each last bar


@pytest.mark.parametrize(("cash", "cost_bps", "min_notional"), [(100_000.0, 1.0, 100.0), (1_000_000.0, 1.0, 100.0),
                                                                (100_000.0, 10.0, 1_000.0), (250_000.0, 0.0, 0.0)])
def test_share_pnl_tracks_the_vectorized_pnl_within_whole_share_rounding(bars, cash, cost_bps, min_notional):
    """Tolerance per minute t+1, with e_i = (p_i + min_notional) / E (p_i the price, E the equity before the
    minute's orders) and r_i the symbol's return:

        |r_shares - r_vector| <= sum_i e_i,t |r_i,t+1| + c * sum_i (e_i,t + e_i,t+1 + |w_i,t r_i,t+1| + |w_i,t+1 g|)

    After each decision a position is within one share of its truncated target, or within an order under
    min_notional of it: |held weight - w| < e. That error earns the next minute's return (first term). The
    vectorized costs turnover in weights at c = cost_bps / 1e4, the shares pay c on the traded notional,
    which differs by the same errors plus the drift of the held weights with the returns (r for a symbol,
    g for the whole book; the vectorized model rebalances that drift for free). A session's P&L differs by
    at most the sum of its minutes' bounds, compounded. Without a daily loss limit: a latch tripped a minute
    apart in the two models is not a rounding error.
    """
    limits = RiskLimits(max_weight=0.4, daily_loss_limit=None)
    policy = OrderPolicy(min_notional=min_notional)
    shares = backtest.run_shares("momentum_rotation", {}, bars, cost_bps=cost_bps, limits=limits, cash=cash,
                                 policy=policy)
    vector = backtest.run("momentum_rotation", {}, bars, cost_bps=cost_bps, limits=limits)
    data = prepare(bars, tuple(shares.positions.columns))
    first = int(data.session_starts[1])
    starts = data.session_starts[1:-1] - first
    price = pd.DataFrame(data.close).ffill().to_numpy()[first:]
    ret = data.pnl[first:]
    w = vector.weights.to_numpy()
    equity = shares.equity.to_numpy()
    costs = shares.orders.groupby("time")["cost"].sum().reindex(shares.equity.index, fill_value=0.0).to_numpy()
    before = equity + costs  # the equity the policy saw
    e = (price + min_notional) / before[:, None]

    def previous(x: np.ndarray, fill: float = 0.0) -> np.ndarray:
        out = np.concatenate([np.full((1, *x.shape[1:]), fill), x[:-1]])
        out[starts] = fill
        return out

    g = before / previous(equity, cash) - 1.0
    c = cost_bps / 1e4
    bound = (previous(e) * np.abs(ret)).sum(1) + c * (
        previous(e) + e + np.abs(previous(w) * ret) + np.abs(w * g[:, None])).sum(1)
    diff = np.abs(shares.returns.to_numpy() - vector.returns.to_numpy())
    assert (diff <= bound * 1.01 + 1e-12).all()  # 1%: second-order terms (cost x rounding)

    days = data.day[first:]
    for s, day in enumerate(shares.sessions):
        rows = days == day
        grow_s = np.r_[1.0, np.cumprod(1 + shares.returns.to_numpy()[rows])]
        grow_v = np.r_[1.0, np.cumprod(1 + vector.returns.to_numpy()[rows])]
        tolerance = bound[rows].sum() * 1.01 * grow_s.max() * grow_v[-1] / grow_v.min()
        gap = shares.session_pnl[day] / cash - (grow_v[-1] - 1.0)
        assert abs(gap) <= tolerance, (s, gap, tolerance)
        assert abs(grow_v[-1] - 1.0) > 20 * abs(gap)  # the P&L is large against the rounding


def test_fractional_shares_without_minimum_or_costs_are_the_vectorized_backtest(bars):
    policy = OrderPolicy(min_notional=0.0, whole_shares=False)
    shares = backtest.run_shares("momentum_rotation", {}, bars, cost_bps=0.0, cash=CASH, policy=policy)
    vector = backtest.run("momentum_rotation", {}, bars, cost_bps=0.0)
    np.testing.assert_allclose(shares.returns.to_numpy(), vector.returns.to_numpy(), rtol=0, atol=1e-12)


def test_share_backtest_refuses_bad_arguments(bars):
    for kwargs, needle in (({"cash": 0.0}, "cash"), ({"cost_bps": -1.0}, "cost_bps"),
                           ({"warmup_sessions": 4}, "warmup_sessions")):
        with pytest.raises(ValueError, match=needle):
            backtest.run_shares("momentum_rotation", {}, bars, **kwargs)
