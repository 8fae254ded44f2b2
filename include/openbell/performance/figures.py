"""The figures a trader reads off a trading record, and the record a backtest leaves.

A :class:`Record` is what happened: the equity after every minute, the minute returns, each session's
return, the trades, the gross exposure, the P&L per symbol, and optionally buy-and-hold of the universe on
the same minutes. :func:`backtest_record` builds one from :func:`openbell.backtest.run_shares`, whose
sessions each start flat with the same capital and end flat: the equity over several sessions is the
capital plus the cumulative P&L (no compounding), and a period's return is its P&L over the capital.

:func:`figures_of` turns a record into :class:`Figures`; the definitions are in ``docs/backtest.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date

import numpy as np
import pandas as pd

from openbell.backtest import MINUTES_PER_YEAR, ShareResult, sharpe
from openbell.calendar import ET

TRADE_COLUMNS = ("time", "symbol", "side", "qty", "price", "notional", "cost")


@dataclass(frozen=True)
class Record:
    """A trading record over one or more sessions (minute indexes are aware UTC bar starts).

    ``equity``: marked at each minute's close after its fills and costs, the capital plus the P&L so far;
    ``returns``: each minute's P&L over the equity before it; ``daily``: each session's P&L over the capital
    (index: session dates); ``trades``: one row per fill (:data:`TRADE_COLUMNS`); ``gross``: the gross
    exposure after each minute's fills over the equity then; ``symbol_pnl``: the P&L per symbol net of costs;
    ``benchmark``: equal-weight buy-and-hold of the universe on ``equity``'s minutes; ``slippage``: what
    filling at the next bar's open instead of the close would have cost (positive: dearer), if known.
    """

    capital: float
    equity: pd.Series
    returns: pd.Series
    daily: pd.Series
    trades: pd.DataFrame
    gross: pd.Series
    symbol_pnl: pd.Series
    benchmark: pd.Series | None = None
    slippage: float | None = None


@dataclass(frozen=True)
class Figures:
    """The figures of a :class:`Record`; returns and drawdowns are fractions, money in the record's currency."""

    capital: float
    sessions: int
    first: date | None
    last: date | None
    pnl: float
    total_return: float
    sharpe: float
    sortino: float | None  # None when no minute lost money
    max_drawdown: float
    turnover: float  # traded notional over the capital, all sessions together
    trades: int
    traded: float  # notional
    costs: float
    slippage: float | None
    exposure: float  # average gross exposure over the equity, every minute counted
    up_sessions: int
    down_sessions: int
    best_session: float
    worst_session: float
    per_symbol: dict[str, float] = field(default_factory=dict)
    benchmark_return: float | None = None

    @property
    def turnover_per_session(self) -> float:
        return self.turnover / self.sessions if self.sessions else 0.0

    def rows(self) -> list[tuple[str, str]]:
        """(label, value) in the order a trader reads them, formatted for a terminal or a page."""
        slip = "n/a" if self.slippage is None else (
            f"{_money(-self.slippage)} ({_bps(self.slippage, self.traded)} of traded), not in the P&L")
        span = f" ({self.first} .. {self.last})" if self.first else ""
        rows = [
            ("total return", f"{self.total_return:+.2%}  (P&L {_money(self.pnl)} on {self.capital:,.2f})"),
            ("buy-and-hold, equal weight", "n/a" if self.benchmark_return is None
             else f"{self.benchmark_return:+.2%}"),
            ("Sharpe, annualized", f"{self.sharpe:.2f}"),
            ("Sortino, annualized", "n/a (no losing minute)" if self.sortino is None else f"{self.sortino:.2f}"),
            ("max drawdown", f"{self.max_drawdown:.2%}"),
            ("turnover", f"{self.turnover_per_session:.2f}x capital per session ({self.turnover:.1f}x in all)"),
            ("trades", f"{self.trades} ({self.traded:,.0f} traded)"),
            ("costs (fees and slippage)", f"{_money(-self.costs)} ({_bps(self.costs, self.traded)} of traded)"),
            ("slippage at the next open", slip),
            ("exposure", f"{self.exposure:.2f} average gross"),
            ("sessions", f"{self.sessions}{span}: {self.up_sessions} up, {self.down_sessions} down;"
                         f" best {self.best_session:+.2%}, worst {self.worst_session:+.2%}"),
        ]
        return rows


def _money(x: float) -> str:
    return f"{x:+,.2f}"


def _bps(part: float, whole: float) -> str:
    return f"{part / whole * 1e4:.2f} bps" if whole else "0.00 bps"


# -- series ---------------------------------------------------------------------------------------------


def drawdown(equity: pd.Series, start: float | None = None) -> pd.Series:
    """How far below its running peak the equity is after each minute (0 or negative), the peak counting
    ``start`` (the equity before the first minute) when given."""
    values = equity.to_numpy(dtype=float)
    peak = np.maximum.accumulate(np.r_[values[:1] if start is None else [start], values])[1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        return pd.Series(np.where(peak > 0, values / peak - 1.0, 0.0), index=equity.index, name="drawdown")


def sortino(returns: pd.Series) -> float | None:
    """Annualized Sortino ratio of minute returns: the mean over the downside deviation (target 0, every
    minute counted); None when no minute lost money."""
    r = returns.to_numpy(dtype=float)
    if len(r) < 2:
        return None
    downside = math.sqrt(float(np.mean(np.minimum(r, 0.0) ** 2)))
    if downside <= 1e-12:
        return None
    return float(r.mean() / downside * math.sqrt(MINUTES_PER_YEAR))


def monthly_returns(daily: pd.Series) -> pd.DataFrame:
    """Each month's return (the sum of its sessions' returns, as on a constant capital): years x months 1-12,
    NaN where there is no session."""
    if daily.empty:
        return pd.DataFrame(columns=range(1, 13), dtype=float)
    days = pd.to_datetime(pd.Index(daily.index))
    sums = daily.groupby([days.year, days.month]).sum()
    return sums.unstack().reindex(columns=range(1, 13))


def symbol_pnl(trades: pd.DataFrame) -> pd.Series:
    """P&L per symbol of a record that ends flat: what its sales brought in less what its purchases cost,
    less its costs; sorted from best to worst."""
    if trades.empty:
        return pd.Series(dtype=float, name="pnl")
    signed = np.where(trades["side"] == "sell", 1.0, -1.0) * trades["notional"].astype(float)
    flows = pd.Series(signed - trades["cost"].astype(float), index=trades.index)
    return flows.groupby(trades["symbol"]).sum().sort_values(ascending=False).rename("pnl")


def closes(bars: pd.DataFrame, index: pd.DatetimeIndex, symbols: list[str]) -> pd.DataFrame:
    """Minute x symbol closes on ``index``, each carried forward from its last bar (NaN before the first)."""
    frame = bars.loc[bars["symbol"].isin(symbols), ["timestamp", "symbol", "close"]]
    frame = frame.assign(timestamp=pd.to_datetime(frame["timestamp"], utc=True).dt.as_unit("ns"))
    wide = frame.drop_duplicates(["timestamp", "symbol"], keep="last").pivot(
        index="timestamp", columns="symbol", values="close")
    wide = wide.reindex(columns=symbols).sort_index().ffill()
    return wide.reindex(pd.DatetimeIndex(index).as_unit("ns"), method="ffill")


def buy_and_hold(prices: pd.DataFrame, capital: float) -> pd.Series:
    """The equity of ``capital`` split equally among the columns at their first price on the index and held;
    a column's share stays cash until its first price, a column never priced is left out."""
    priced = prices.loc[:, prices.notna().any()]
    if priced.shape[1] == 0:
        return pd.Series(capital, index=prices.index, name="buy_and_hold", dtype=float)
    first = priced.bfill().iloc[0]
    growth = (priced / first).fillna(1.0)
    return (capital * growth.mean(axis=1)).rename("buy_and_hold")


def slippage_at_next_open(trades: pd.DataFrame, bars: pd.DataFrame) -> float:
    """What the trades would have cost more had each filled at its symbol's next bar's open in the same
    session instead of its price (buys dearer when the price rose, sells when it fell); a trade with no later
    bar that session (the closing ones) counts 0."""
    if trades.empty:
        return 0.0
    left = trades.assign(time=pd.to_datetime(trades["time"], utc=True).dt.as_unit("ns")).sort_values("time")
    right = bars[["timestamp", "symbol", "open"]].rename(columns={"timestamp": "next_at", "open": "next_open"})
    right = right.assign(next_at=pd.to_datetime(right["next_at"], utc=True).dt.as_unit("ns")).sort_values("next_at")
    merged = pd.merge_asof(left, right, left_on="time", right_on="next_at", by="symbol", direction="forward",
                           allow_exact_matches=False)
    same = merged["next_at"].notna() & (merged["next_at"].dt.tz_convert(ET).dt.date
                                        == merged["time"].dt.tz_convert(ET).dt.date)
    sign = np.where(merged["side"] == "buy", 1.0, -1.0)
    extra = sign * merged["qty"].astype(float) * (merged["next_open"] - merged["price"].astype(float))
    return float(extra[same].sum())


# -- a backtest's record and the figures ---------------------------------------------------------------


def backtest_record(result: ShareResult, bars: pd.DataFrame, universe: list[str] | None = None) -> Record:
    """The record of a share-level backtest over ``bars`` (the frame it ran on)."""
    capital = result.cash
    symbols = list(universe or result.positions.columns)
    index = result.equity.index
    equity = (capital + result.pnl.cumsum()).rename("equity")
    prices = closes(bars, index, symbols)
    held = result.positions.reindex(columns=symbols, fill_value=0.0).to_numpy()
    exposure = np.nansum(np.abs(held * prices.to_numpy()), axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        gross = np.where(result.equity.to_numpy() > 0, exposure / result.equity.to_numpy(), 0.0)
    daily = pd.Series(result.session_pnl.to_numpy() / capital, name="return",
                      index=[date(d // 10000, d // 100 % 100, d % 100) for d in result.session_pnl.index])
    trades = result.orders.loc[:, list(TRADE_COLUMNS)].reset_index(drop=True)
    benchmark = buy_and_hold(prices, capital)
    benchmark.index = index
    per_symbol = symbol_pnl(trades)
    per_symbol = pd.concat([per_symbol, pd.Series(0.0, index=[s for s in symbols if s not in per_symbol.index])])
    return Record(capital=capital, equity=equity, returns=result.returns, daily=daily, trades=trades,
                  gross=pd.Series(gross, index=index, name="gross"),
                  symbol_pnl=per_symbol.sort_values(ascending=False, kind="stable").rename("pnl"),
                  benchmark=benchmark, slippage=slippage_at_next_open(trades, bars))


def figures_of(record: Record) -> Figures:
    """The figures of ``record``."""
    r = record.returns.to_numpy(dtype=float)
    daily = record.daily.to_numpy(dtype=float)
    pnl = float(record.equity.iloc[-1] - record.capital) if len(record.equity) else 0.0
    traded = float(record.trades["notional"].sum()) if len(record.trades) else 0.0
    days = list(record.daily.index)
    bench = record.benchmark
    return Figures(
        capital=record.capital,
        sessions=len(daily),
        first=days[0] if days else None,
        last=days[-1] if days else None,
        pnl=pnl,
        total_return=pnl / record.capital,
        sharpe=sharpe(len(r), float(r.sum()), float((r * r).sum())),
        sortino=sortino(record.returns),
        max_drawdown=float(-drawdown(record.equity, record.capital).min()) if len(record.equity) else 0.0,
        turnover=traded / record.capital,
        trades=len(record.trades),
        traded=traded,
        costs=float(record.trades["cost"].sum()) if len(record.trades) else 0.0,
        slippage=record.slippage,
        exposure=float(record.gross.mean()) if len(record.gross) else 0.0,
        up_sessions=int((daily > 0).sum()),
        down_sessions=int((daily < 0).sum()),
        best_session=float(daily.max()) if len(daily) else 0.0,
        worst_session=float(daily.min()) if len(daily) else 0.0,
        per_symbol={str(k): float(v) for k, v in record.symbol_pnl.items()},
        benchmark_return=None if bench is None or bench.empty else float(bench.iloc[-1] / record.capital - 1.0),
    )
