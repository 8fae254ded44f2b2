"""The charts of a performance page, as plotly figures: equity against buy-and-hold, drawdown, contributions
per symbol, daily returns and a heatmap of monthly returns.

Minute series are drawn on a session axis: one step per minute with a bar, nights, weekends and holidays
left out, labelled with the sessions' dates; the hover shows each point's New York time.
"""

from __future__ import annotations

import calendar as months
import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from openbell.calendar import ET
from openbell.performance.figures import monthly_returns

MAX_POINTS = 20_000  # a minute series is thinned to about this many points (every k-th minute, and the last)
MAX_TICKS = 12
UP, DOWN, LINE, BENCH = "#1a9850", "#d73027", "#1f4e9a", "#8c8c8c"
FONT = "-apple-system, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif"


def layout(fig: go.Figure, title: str, height: int) -> go.Figure:
    fig.update_layout(template="plotly_white", title={"text": title, "x": 0.01, "font": {"size": 15}},
                      height=height, margin={"l": 60, "r": 20, "t": 48, "b": 40}, font={"family": FONT},
                      legend={"orientation": "h", "yanchor": "bottom", "y": 1.0, "xanchor": "right", "x": 1.0},
                      hovermode="x unified")
    return fig


def _thin(n: int) -> np.ndarray:
    """Positions of the points drawn out of ``n``."""
    step = max(1, math.ceil(n / MAX_POINTS))
    keep = np.arange(0, n, step)
    return keep if not n or keep[-1] == n - 1 else np.r_[keep, n - 1]


def session_axis(index: pd.DatetimeIndex) -> tuple[np.ndarray, list[str], list[int], list[str]]:
    """(kept positions, their New York times as text, tick positions, tick labels) of a minute index."""
    local = pd.DatetimeIndex(index).tz_convert(ET)
    keep = _thin(len(local))
    days = np.asarray(local.date)
    starts = [i for i in range(len(days)) if i == 0 or days[i] != days[i - 1]]
    every = max(1, math.ceil(len(starts) / MAX_TICKS))
    ticks = starts[::every]
    labels = [f"{local[i]:%Y-%m-%d}" for i in ticks]
    return keep, [f"{t:%Y-%m-%d %H:%M} ET" for t in local[keep]], ticks, labels


def _minute_figure(index: pd.DatetimeIndex, title: str, height: int) -> tuple[go.Figure, np.ndarray, list[str]]:
    keep, when, ticks, labels = session_axis(index)
    fig = layout(go.Figure(), title, height)
    fig.update_xaxes(tickmode="array", tickvals=ticks, ticktext=labels, showgrid=True, zeroline=False)
    return fig, keep, when


def equity_chart(equity: pd.Series, benchmark: pd.Series | None = None, *, label: str = "strategy",
                 benchmark_label: str = "buy-and-hold, equal weight") -> go.Figure:
    """The equity after each minute, and buy-and-hold of the universe (or another ``benchmark``) on the same
    minutes."""
    fig, keep, when = _minute_figure(pd.DatetimeIndex(equity.index), "Equity", 380)
    lines = [(label, equity, LINE, "solid")]
    if benchmark is not None:
        lines.append((benchmark_label, benchmark, BENCH, "dot"))
    for name, series, color, dash in lines:
        fig.add_trace(go.Scatter(x=keep, y=series.to_numpy(dtype=float)[keep], customdata=when, name=name,
                                 mode="lines", line={"color": color, "width": 1.6, "dash": dash},
                                 hovertemplate="%{customdata}: %{y:,.2f}<extra>" + name + "</extra>"))
    fig.update_yaxes(tickformat=",.0f")
    return fig


def drawdown_chart(drawdowns: pd.Series) -> go.Figure:
    """How far below its running peak the equity is, after each minute."""
    fig, keep, when = _minute_figure(pd.DatetimeIndex(drawdowns.index), "Drawdown", 240)
    fig.add_trace(go.Scatter(x=keep, y=drawdowns.to_numpy(dtype=float)[keep], customdata=when, name="drawdown",
                             mode="lines", fill="tozeroy", line={"color": DOWN, "width": 1},
                             hovertemplate="%{customdata}: %{y:.2%}<extra></extra>"))
    fig.update_yaxes(tickformat=".1%", rangemode="tozero")
    fig.update_layout(showlegend=False)
    return fig


def contributions_chart(pnl: pd.Series, capital: float) -> go.Figure:
    """The P&L of each symbol, net of its costs, best at the top."""
    ordered = pnl.sort_values()
    fig = layout(go.Figure(), "P&L by symbol", max(220, 60 + 26 * len(ordered)))
    fig.add_trace(go.Bar(x=ordered.to_numpy(dtype=float), y=[str(s) for s in ordered.index], orientation="h",
                         marker={"color": [UP if v >= 0 else DOWN for v in ordered]},
                         text=[f"{v / capital:+.2%}" for v in ordered], textposition="auto",
                         hovertemplate="%{y}: %{x:+,.2f}<extra></extra>"))
    fig.update_xaxes(tickformat=",.0f")
    fig.update_layout(showlegend=False, hovermode="closest")
    return fig


def daily_chart(daily: pd.Series) -> go.Figure:
    """Each session's return."""
    fig = layout(go.Figure(), "Daily returns", 280)
    values = daily.to_numpy(dtype=float)
    fig.add_trace(go.Bar(x=[str(d) for d in daily.index], y=values, marker={"color": [UP if v >= 0 else DOWN
                                                                                      for v in values]},
                         hovertemplate="%{x}: %{y:+.2%}<extra></extra>"))
    fig.update_xaxes(type="category", nticks=MAX_TICKS)
    fig.update_yaxes(tickformat=".1%")
    fig.update_layout(showlegend=False, hovermode="closest")
    return fig


def monthly_chart(daily: pd.Series) -> go.Figure:
    """Each month's return, years down, months across."""
    table = monthly_returns(daily)
    z = table.to_numpy(dtype=float)
    text = [["" if np.isnan(v) else f"{v:+.2%}" for v in row] for row in z]
    fig = layout(go.Figure(), "Monthly returns", max(180, 110 + 40 * len(table)))
    bound = float(np.nanmax(np.abs(z))) if np.isfinite(z).any() else 0.01
    fig.add_trace(go.Heatmap(z=z, x=[months.month_abbr[m] for m in table.columns], y=[str(y) for y in table.index],
                             text=text, texttemplate="%{text}", colorscale="RdYlGn", zmid=0.0, zmin=-bound,
                             zmax=bound, xgap=2, ygap=2, showscale=False,
                             hovertemplate="%{x} %{y}: %{text}<extra></extra>"))
    fig.update_yaxes(type="category", autorange="reversed")
    fig.update_xaxes(type="category", side="top")
    fig.update_layout(hovermode="closest", margin={"t": 70})
    return fig
