"""The figures of a share-level backtest on two four-minute sessions, every number worked out by hand.

A strategy holding half the equity in AAA (none in BBB) trades through the order policy (whole shares,
minimum notional 500, so no small rebalance) at 10 bps:

session 2025-11-20, AAA closes 100 102 101 103: buy 50 at 100 (cost 5.00), sell 50 at 103 at the last bar
(cost 5.15): P&L 5150 - 5000 - 10.15 = +139.85.
session 2025-11-21, AAA closes 104 100 100 98: buy trunc(5000/104) = 48 at 104 (cost 4.992), sell 48 at 98
(cost 4.704): P&L 4704 - 4992 - 9.696 = -297.696.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pytest
from pydantic import BaseModel, ConfigDict, Field

from openbell.backtest import MINUTES_PER_YEAR, run_shares
from openbell.calendar import ET
from openbell.performance import backtest_record, figures_of
from openbell.performance.figures import drawdown, monthly_returns, slippage_at_next_open
from openbell.policy import OrderPolicy
from openbell.strategy import base as strategy_base

CAPITAL = 10_000.0
AAA_CLOSE = {date(2025, 11, 20): [100.0, 102.0, 101.0, 103.0], date(2025, 11, 21): [104.0, 100.0, 100.0, 98.0]}
AAA_OPEN = {date(2025, 11, 20): [100.0, 100.5, 102.0, 101.0], date(2025, 11, 21): [104.0, 103.0, 100.0, 100.0]}
BBB_CLOSE = {date(2025, 11, 20): [50.0, 50.0, 51.0, 52.0], date(2025, 11, 21): [52.0, 52.0, 52.0, 52.0]}


class _HalfParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    weight: float = Field(0.5, ge=0, le=1)


class _HalfInFirst:
    """Holds ``weight`` of the equity in the universe's first symbol, nothing else."""

    name: ClassVar[str] = "half_in_first"
    Params: ClassVar[type[BaseModel]] = _HalfParams

    def __init__(self, params: _HalfParams, universe: Sequence[str]) -> None:
        self.params, self.universe = params, tuple(universe)

    def warmup(self, history: pd.DataFrame) -> None:
        """Nothing to remember."""

    def on_minute(self, ts: datetime, bars: Mapping[str, Any]) -> dict[str, float]:
        return {s: (self.params.weight if i == 0 else 0.0) for i, s in enumerate(self.universe)}

    @classmethod
    def vector_targets(cls, data: Any, params: _HalfParams, cache: Any = None) -> np.ndarray:
        w = np.zeros((len(data.times), len(data.symbols)))
        w[:, 0] = params.weight
        return w


def _bars() -> pd.DataFrame:
    rows = []
    for day in AAA_CLOSE:
        for m in range(4):
            ts = pd.Timestamp(datetime(day.year, day.month, day.day, 9, 30 + m, tzinfo=ET)).tz_convert("UTC")
            rows.append((ts, "AAA", AAA_OPEN[day][m], AAA_CLOSE[day][m]))
            rows.append((ts, "BBB", BBB_CLOSE[day][m], BBB_CLOSE[day][m]))
    frame = pd.DataFrame(rows, columns=["timestamp", "symbol", "open", "close"])
    frame["high"] = frame[["open", "close"]].max(axis=1)
    frame["low"] = frame[["open", "close"]].min(axis=1)
    frame["volume"] = 1000.0
    return frame


@pytest.fixture
def backtested(monkeypatch: pytest.MonkeyPatch) -> tuple[Any, pd.DataFrame]:
    monkeypatch.setitem(strategy_base._REGISTRY, _HalfInFirst.name, _HalfInFirst)
    bars = _bars()
    result = run_shares(_HalfInFirst.name, None, bars, warmup_sessions=0, cost_bps=10.0, universe=("AAA", "BBB"),
                        cash=CAPITAL, policy=OrderPolicy(min_notional=500.0))
    return result, bars


def test_the_trades_and_the_pnl_are_the_hand_computed_ones(backtested: tuple[Any, pd.DataFrame]) -> None:
    result, bars = backtested
    trades = result.orders
    assert list(zip(trades["symbol"], trades["side"], trades["qty"], trades["price"], strict=True)) == [
        ("AAA", "buy", 50.0, 100.0), ("AAA", "sell", 50.0, 103.0), ("AAA", "buy", 48.0, 104.0),
        ("AAA", "sell", 48.0, 98.0)]
    record = backtest_record(result, bars, ["AAA", "BBB"])
    assert record.daily.to_dict() == pytest.approx({date(2025, 11, 20): 0.013985, date(2025, 11, 21): -0.0297696})
    assert record.equity.to_numpy() == pytest.approx(
        [9995.0, 10095.0, 10045.0, 10139.85, 10134.858, 9942.858, 9942.858, 9842.154])


def test_the_figures_are_the_hand_computed_ones(backtested: tuple[Any, pd.DataFrame]) -> None:
    result, bars = backtested
    f = figures_of(backtest_record(result, bars, ["AAA", "BBB"]))
    assert f.sessions == 2 and (f.first, f.last) == (date(2025, 11, 20), date(2025, 11, 21))
    assert f.pnl == pytest.approx(139.85 - 297.696)
    assert f.total_return == pytest.approx(-0.0157846)
    assert f.trades == 4
    assert f.traded == pytest.approx(5000 + 5150 + 4992 + 4704)
    assert f.costs == pytest.approx(5.0 + 5.15 + 4.992 + 4.704)
    assert f.turnover == pytest.approx(1.9846) and f.turnover_per_session == pytest.approx(0.9923)
    assert f.per_symbol == pytest.approx({"AAA": -157.846, "BBB": 0.0})
    assert f.max_drawdown == pytest.approx((10139.85 - 9842.154) / 10139.85)  # from the peak to the end
    assert f.benchmark_return == pytest.approx((98 / 100 + 52 / 50) / 2 - 1)  # equal weight from the first close
    # next bar's open: the first buy would have paid 100.5 (+0.5 x 50), the second 103 (-1 x 48); closes: none
    assert f.slippage == pytest.approx(25.0 - 48.0)
    assert (f.up_sessions, f.down_sessions) == (1, 1)
    assert (f.best_session, f.worst_session) == pytest.approx((0.013985, -0.0297696))
    # after each minute's fills: AAA held at the close over the equity (the last bar is flat)
    gross = [5000 / 9995, 5100 / 10095, 5050 / 10045, 0.0, 4992 / 9995.008, 4800 / 9803.008, 4800 / 9803.008, 0.0]
    assert f.exposure == pytest.approx(sum(gross) / 8)
    r = np.array([-5 / 10000, 100 / 9995, -50 / 10095, 94.85 / 10045,
                  -4.992 / 10000, -192 / 9995.008, 0.0, -100.704 / 9803.008])
    year = math.sqrt(MINUTES_PER_YEAR)
    assert f.sharpe == pytest.approx(r.mean() / r.std(ddof=1) * year)
    assert f.sortino == pytest.approx(r.mean() / math.sqrt(np.mean(np.minimum(r, 0) ** 2)) * year)


def test_the_rows_print_every_figure(backtested: tuple[Any, pd.DataFrame]) -> None:
    result, bars = backtested
    rows = dict(figures_of(backtest_record(result, bars)).rows())
    assert rows["total return"].startswith("-1.58%  (P&L -157.85 on 10,000.00)")
    assert rows["trades"] == "4 (19,846 traded)"
    assert rows["costs (fees and slippage)"] == "-19.85 (10.00 bps of traded)"
    assert rows["slippage at the next open"].startswith("+23.00 (-11.59 bps of traded)")
    assert rows["buy-and-hold, equal weight"] == "+1.00%"
    assert rows["sessions"].startswith("2 (2025-11-20 .. 2025-11-21): 1 up, 1 down; best +1.40%, worst -2.98%")
    assert set(rows) >= {"Sharpe, annualized", "Sortino, annualized", "max drawdown", "turnover", "exposure"}


def test_drawdown_counts_the_starting_equity_as_a_peak() -> None:
    equity = pd.Series([99.0, 101.0, 90.9, 120.0])
    assert drawdown(equity, 100.0).to_numpy() == pytest.approx([-0.01, 0.0, -0.1, 0.0])
    assert drawdown(equity).to_numpy() == pytest.approx([0.0, 0.0, -0.1, 0.0])


def test_monthly_returns_add_up_the_sessions_of_each_month() -> None:
    daily = pd.Series([0.01, 0.02, -0.005, 0.03], index=[date(2025, 1, 2), date(2025, 1, 3), date(2025, 2, 3),
                                                         date(2026, 1, 2)])
    table = monthly_returns(daily)
    assert list(table.index) == [2025, 2026] and list(table.columns) == list(range(1, 13))
    assert table.loc[2025, 1] == pytest.approx(0.03) and table.loc[2025, 2] == pytest.approx(-0.005)
    assert table.loc[2026, 1] == pytest.approx(0.03) and np.isnan(table.loc[2025, 3])


def test_a_trade_without_a_later_bar_that_session_costs_no_slippage() -> None:
    t = pd.Timestamp("2025-11-20 20:59", tz="UTC")  # 15:59 ET, the last minute
    trades = pd.DataFrame({"time": [t], "symbol": ["AAA"], "side": ["buy"], "qty": [10.0], "price": [100.0],
                           "notional": [1000.0], "cost": [0.1]})
    next_day = pd.DataFrame({"timestamp": [pd.Timestamp("2025-11-21 14:30", tz="UTC")], "symbol": ["AAA"],
                             "open": [90.0]})
    assert slippage_at_next_open(trades, next_day) == 0.0
