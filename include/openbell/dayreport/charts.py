"""The day report's charts, as plotly figures: the intraday equity of live trading and of the replay, the
P&L difference step by step, the decided and missed minutes, each fill's slippage, each traded symbol's
price with the orders and fills on it, and, over several days, each day's P&L. Times read in New York time.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from openbell.calendar import ET
from openbell.performance.charts import BENCH, DOWN, LINE, UP, layout

REPLAY = "#e08214"
MISSED = "#b2182b"


def _et(index: pd.Index | pd.Series) -> list[str]:
    """Aware times as New York wall-clock text plotly reads as dates."""
    return [f"{pd.Timestamp(t).tz_convert(ET):%Y-%m-%d %H:%M:%S}" for t in index]


def _time_axis(fig: go.Figure) -> go.Figure:
    fig.update_xaxes(type="date", tickformat="%H:%M", hoverformat="%H:%M:%S ET", showgrid=True)
    return fig


def equity_chart(live: pd.Series, replay: pd.Series | None, account: pd.Series | None = None) -> go.Figure:
    """Equity after each minute: live (its fills, positions at the closes), the replay's, and the account's
    as the loop recorded it."""
    fig = _time_axis(layout(go.Figure(), "Intraday equity", 380))
    lines = [("live", live, LINE, "solid"), ("replay", replay, REPLAY, "solid"), ("account (recorded)", account, BENCH,
                                                                                 "dot")]
    for name, series, color, dash in lines:
        if series is None or series.empty:
            continue
        fig.add_trace(go.Scatter(x=_et(series.index), y=series.to_numpy(dtype=float), name=name, mode="lines",
                                 line={"color": color, "width": 1.6, "dash": dash, "shape": "hv"},
                                 hovertemplate="%{y:,.2f}<extra>" + name + "</extra>"))
    fig.update_yaxes(tickformat=",.0f")
    return fig


def waterfall_chart(replay_pnl: float, attribution: dict[str, float], live_pnl: float) -> go.Figure:
    """From the replay's P&L to live's, a step per cause."""
    labels = ["replay P&L", *attribution, "live P&L"]
    values = [replay_pnl, *attribution.values(), live_pnl]
    fig = layout(go.Figure(), "From the replay's P&L to live's", 340)
    fig.add_trace(go.Waterfall(x=labels, y=values, measure=["absolute", *["relative"] * len(attribution), "total"],
                               text=[f"{v:+,.2f}" for v in values], textposition="outside",
                               increasing={"marker": {"color": UP}}, decreasing={"marker": {"color": DOWN}},
                               totals={"marker": {"color": LINE}}, connector={"line": {"color": "#b0b6c3"}},
                               hovertemplate="%{x}: %{y:+,.2f}<extra></extra>"))
    fig.update_layout(showlegend=False, hovermode="closest")
    fig.update_yaxes(tickformat=",.0f")
    return fig


def decisions_chart(minutes: pd.DatetimeIndex, decided: pd.DatetimeIndex, missed: pd.DatetimeIndex,
                    late: pd.DataFrame) -> go.Figure:
    """A row of the replay's minutes, a row of live's decisions with the missed minutes marked, and each
    trade made late drawn from the replay's minute to live's."""
    fig = _time_axis(layout(go.Figure(), "Decisions: live against the replay, minute by minute", 260))
    rows = [("replay", minutes, BENCH, "circle", 5), ("live", decided, LINE, "circle", 5),
            ("live", missed, MISSED, "x", 9)]
    for (row, when, color, symbol, size), name in zip(rows, ("replay decided", "live decided", "missed"), strict=True):
        fig.add_trace(go.Scatter(x=_et(when), y=[row] * len(when), mode="markers", name=name,
                                 marker={"color": color, "symbol": symbol, "size": size},
                                 hovertemplate="%{x}<extra>" + name + "</extra>"))
    for r in late.itertuples():
        fig.add_trace(go.Scatter(x=_et([r.minute, r.live_minute]), y=["replay", "live"], mode="lines+markers",
                                 line={"color": REPLAY, "width": 1.4}, showlegend=False,
                                 hovertemplate=f"{r.symbol} {r.side} late by {r.delay:.0f} min<extra></extra>"))
    fig.update_yaxes(type="category", categoryorder="array", categoryarray=["live", "replay"])
    fig.update_layout(hovermode="closest")
    return fig


def slippage_chart(fills: pd.DataFrame) -> go.Figure:
    """Each live fill's effect on the P&L against its decision price (negative: filled worse)."""
    fig = layout(go.Figure(), "Slippage: each fill against its decision price", 300)
    labels = [f"{pd.Timestamp(t).tz_convert(ET):%H:%M:%S} {s} {side}"
              for t, s, side in zip(fills["ts"], fills["symbol"], fills["side"], strict=True)]
    effect = fills["effect"].to_numpy(dtype=float)
    custom = [[f"{p:,.4f}", f"{r:,.4f}", f"{x:+.4f}"] for p, r, x in
              zip(fills["price"], fills["reference"], fills["slippage"], strict=True)]
    fig.add_trace(go.Bar(x=labels, y=effect, marker={"color": [UP if v >= 0 else DOWN for v in effect]},
                         customdata=custom,
                         hovertemplate="%{x}: %{y:+,.2f}<br>filled %{customdata[0]}, decided at %{customdata[1]}"
                                       " (%{customdata[2]} a share)<extra></extra>"))
    fig.update_xaxes(type="category")
    fig.update_layout(showlegend=False, hovermode="closest")
    return fig


def _markers(fig: go.Figure, x: list[str], y: list[float], name: str, color: str, symbol: str, text: list[str],
             hollow: bool = False) -> None:
    if not x:
        return
    marker = {"color": "rgba(0,0,0,0)" if hollow else color, "symbol": symbol, "size": 11,
              "line": {"color": color, "width": 2}}
    fig.add_trace(go.Scatter(x=x, y=y, mode="markers", name=name, marker=marker, text=text,
                             hovertemplate="%{text}<extra>" + name + "</extra>"))


def price_chart(symbol: str, closes: pd.Series, fills: pd.DataFrame, refused: pd.DataFrame,
                replay: pd.DataFrame) -> go.Figure:
    """``symbol``'s closes with live fills (filled triangles), the replay's orders (hollow, at the decided
    minute's close) and the orders refused or not sent (crosses, at the decided minute's close)."""
    fig = _time_axis(layout(go.Figure(), f"{symbol}: price, orders and fills", 340))
    fig.add_trace(go.Scatter(x=_et(closes.index), y=closes.to_numpy(dtype=float), name="close", mode="lines",
                             line={"color": "#5b6478", "width": 1.2}, hovertemplate="%{y:,.2f}<extra>close</extra>"))
    end = pd.Timedelta(minutes=1)  # a decision is made at its minute's close, the end of the minute
    for side, color, mark in (("buy", UP, "triangle-up"), ("sell", DOWN, "triangle-down")):
        f = fills[fills["side"] == side]
        _markers(fig, _et(f["ts"]), list(f["price"]), f"live {side}", color, mark,
                 [f"{q:g} at {p:,.2f} ({o or 'unknown'})" for q, p, o in zip(f["qty"], f["price"], f["origin"],
                                                                              strict=True)])
        r = replay[replay["side"] == side]
        _markers(fig, _et(r["time"] + end), list(r["price"]), f"replay {side}", color, mark,
                 [f"{q:g} at {p:,.2f} ({k})" for q, p, k in zip(r["qty"], r["price"], r["kind"], strict=True)],
                 hollow=True)
    if len(refused):
        at = refused["minute"]
        prices = [float(closes.asof(t + end)) if pd.notna(t) and len(closes) else float("nan") for t in at]
        _markers(fig, _et(at + end), prices, "refused or not sent", MISSED, "x",
                 [f"{side} {q:g}: {k} {w}" for side, q, k, w in zip(refused["side"], refused["qty"], refused["kind"],
                                                                     refused["why"], strict=True)])
    fig.update_layout(hovermode="closest")
    return fig


def days_chart(days: pd.DataFrame) -> go.Figure:
    """Each day's P&L, live beside the replay's."""
    fig = layout(go.Figure(), "P&L by day: live and replay", 300)
    x = [str(d) for d in days["date"]]
    fig.add_trace(go.Bar(x=x, y=days["live_pnl"], name="live", marker={"color": LINE},
                         hovertemplate="%{x}: %{y:+,.2f}<extra>live</extra>"))
    fig.add_trace(go.Bar(x=x, y=days["replay_pnl"], name="replay", marker={"color": REPLAY},
                         hovertemplate="%{x}: %{y:+,.2f}<extra>replay</extra>"))
    fig.update_xaxes(type="category")
    fig.update_yaxes(tickformat=",.0f")
    fig.update_layout(barmode="group", hovermode="closest")
    return fig
