"""A performance page: one self-contained HTML file (the plotting library's JavaScript inlined, nothing
fetched when it is viewed) with the figures, the charts of :mod:`openbell.performance.charts` and the trades.

:func:`performance_page` takes a :class:`~openbell.performance.figures.Record`, so a backtest over many
sessions and a single day's record make the same page; :func:`document`, :func:`chart_html` and
:func:`figures_html` build other pages of the same look (the day report's).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from functools import cache

import pandas as pd
import plotly.io as pio
from plotly.offline import get_plotlyjs

from openbell.calendar import ET
from openbell.performance import charts
from openbell.performance.figures import Record, drawdown

MAX_TRADES = 500  # trades listed on the page (the first ones); the count is always given
CONFIG = {"displaylogo": False, "responsive": True, "modeBarButtonsToRemove": ["select2d", "lasso2d"]}
CHART_IDS = ("equity", "drawdown", "contributions", "daily", "monthly")

STYLE = """
body { font-family: -apple-system, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif; margin: 0; color: #1d2433;
       background: #f4f6f9; }
header { background: #1f2a44; color: #fff; padding: 18px 28px; }
header h1 { margin: 0 0 4px; font-size: 22px; font-weight: 600; }
header p { margin: 2px 0; color: #c9d3e6; font-size: 13px; }
main { padding: 18px 28px 40px; max-width: 1400px; margin: 0 auto; }
section { background: #fff; border-radius: 8px; box-shadow: 0 1px 3px rgba(0,0,0,.08); margin-bottom: 16px;
          padding: 8px 12px; }
.grid { display: grid; grid-template-columns: 1fr 1fr; gap: 16px; }
.grid > section { margin-bottom: 0; }
.figures { display: grid; grid-template-columns: repeat(auto-fill, minmax(420px, 1fr)); gap: 4px 24px;
           padding: 12px 16px; }
.figure { display: flex; justify-content: space-between; border-bottom: 1px solid #eef0f4; padding: 5px 0;
          font-size: 14px; gap: 12px; }
.figure span:first-child { color: #5b6478; }
.figure span:last-child { font-variant-numeric: tabular-nums; text-align: right; }
table.trades { border-collapse: collapse; font-size: 12px; width: 100%; font-variant-numeric: tabular-nums; }
table.trades th, table.trades td { padding: 3px 8px; border-bottom: 1px solid #eef0f4; text-align: right; }
table.trades th:nth-child(-n+3), table.trades td:nth-child(-n+3) { text-align: left; }
summary { cursor: pointer; padding: 6px 4px; font-weight: 600; }
.notice { background: #fff4e5; border-left: 4px solid #e8a33d; padding: 10px 16px; font-size: 14px; }
section h2 { font-size: 15px; font-weight: 600; margin: 8px 4px; }
td.bad { color: #b2182b; }
footer { color: #7a8398; font-size: 12px; text-align: center; padding-bottom: 24px; }
@media (max-width: 900px) { .grid { grid-template-columns: 1fr; } }
"""


@cache
def _plotly_js() -> str:
    return get_plotlyjs()


def chart_html(fig: object, div_id: str) -> str:
    """A plotly figure as a ``div`` whose id is ``div_id`` (the library itself is in the document's head)."""
    return pio.to_html(fig, full_html=False, include_plotlyjs=False, div_id=div_id, config=CONFIG,
                       default_width="100%", default_height=f"{fig.layout.height}px")  # type: ignore[attr-defined]


def figures_html(rows: Sequence[tuple[str, str]]) -> str:
    """The (label, value) rows as the page's block of figures."""
    items = "".join(f'<div class="figure"><span>{html.escape(k)}</span><span>{html.escape(v)}</span></div>'
                    for k, v in rows)
    return f'<section class="figures" id="figures">{items}</section>'


def _trades_html(trades: pd.DataFrame) -> str:
    shown = trades.head(MAX_TRADES)
    head = "<tr><th>time (ET)</th><th>symbol</th><th>side</th><th>qty</th><th>price</th><th>notional</th>" \
           "<th>cost</th></tr>"
    body = "".join(
        f"<tr><td>{pd.Timestamp(t).tz_convert(ET):%Y-%m-%d %H:%M}</td><td>{html.escape(str(s))}</td>"
        f"<td>{html.escape(str(side))}</td><td>{q:,.0f}</td><td>{p:,.2f}</td><td>{n:,.2f}</td><td>{c:,.2f}</td></tr>"
        for t, s, side, q, p, n, c in zip(shown["time"], shown["symbol"], shown["side"], shown["qty"],
                                          shown["price"], shown["notional"], shown["cost"], strict=True))
    more = f" (the first {MAX_TRADES} listed)" if len(trades) > MAX_TRADES else ""
    return (f'<section><details id="trades"><summary>Trades: {len(trades)}{more}</summary>'
            f'<table class="trades"><thead>{head}</thead><tbody>{body}</tbody></table></details></section>')


def performance_page(record: Record, *, title: str, subtitle: Sequence[str] = (),
                     rows: Sequence[tuple[str, str]] = (), footer: str = "") -> str:
    """The page of ``record``: ``title`` and ``subtitle`` lines at the top, the ``rows`` of figures (label,
    value), the charts, then the trades. One HTML document; its only script is inlined."""
    equity = record.equity
    sections = [
        figures_html(rows) if rows else "",
        f"<section>{chart_html(charts.equity_chart(equity, record.benchmark), 'equity')}</section>",
        f"<section>{chart_html(charts.drawdown_chart(drawdown(equity, record.capital)), 'drawdown')}</section>",
        '<div class="grid">'
        f"<section>{chart_html(charts.contributions_chart(record.symbol_pnl, record.capital), 'contributions')}"
        "</section>"
        f"<section>{chart_html(charts.daily_chart(record.daily), 'daily')}</section></div>",
        f"<section style=\"margin-top:16px\">{chart_html(charts.monthly_chart(record.daily), 'monthly')}</section>",
        _trades_html(record.trades),
    ]
    return document(title, subtitle, sections, footer)


def document(title: str, subtitle: Sequence[str], sections: Sequence[str], footer: str = "") -> str:
    """One HTML document: ``title`` and ``subtitle`` lines in the header, the ``sections`` (HTML) in order, the
    plotting library inlined in the head."""
    lines = "".join(f"<p>{html.escape(line)}</p>" for line in subtitle)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>{html.escape(title)}</title><style>{STYLE}</style>"
        f"<script type=\"text/javascript\">{_plotly_js()}</script></head>"
        f"<body><header><h1>{html.escape(title)}</h1>{lines}</header><main>{''.join(sections)}</main>"
        f"<footer>{html.escape(footer)}</footer></body></html>\n"
    )
