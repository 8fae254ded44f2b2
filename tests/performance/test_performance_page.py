"""The performance page: one self-contained HTML file whose charts headless Chromium draws without fetching
anything; a screenshot is kept under ``artifacts/`` (or ``$OPENBELL_ARTIFACTS``)."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from openbell.calendar import ET, sessions_between
from openbell.performance import Record, figures_of, performance_page
from openbell.performance.page import CHART_IDS, MAX_TRADES
from page_browser import browser, draw

SYMBOLS = ["AAA", "BBB", "CCC"]


def record(sessions: int = 30, minutes: int = 390) -> Record:
    """A record over ``sessions`` NYSE sessions from 2025-10-01 (two months), every minute traded."""
    days = sessions_between(date(2025, 10, 1), date(2025, 12, 31))[:sessions]
    rng = np.random.default_rng(3)
    index = pd.DatetimeIndex([s.open + timedelta(minutes=m) for s in days for m in range(minutes)])
    pnl = rng.normal(2.0, 40.0, len(index))
    equity = pd.Series(100_000 + pnl.cumsum(), index=index)
    daily = pd.Series(pnl.reshape(sessions, minutes).sum(axis=1) / 100_000, index=[s.date for s in days])
    trades = pd.DataFrame({"time": index[::7], "symbol": [SYMBOLS[i % 3] for i in range(len(index[::7]))],
                           "side": ["buy", "sell"] * (len(index[::7]) // 2) + ["buy"] * (len(index[::7]) % 2),
                           "qty": 10.0, "price": 50.0, "notional": 500.0, "cost": 0.05})
    return Record(capital=100_000.0, equity=equity, returns=pd.Series(pnl / 100_000, index=index), daily=daily,
                  trades=trades, gross=pd.Series(0.5, index=index),
                  symbol_pnl=pd.Series([900.0, -250.0, 40.0], index=SYMBOLS),
                  benchmark=pd.Series(100_000 * np.exp(np.linspace(0, 0.02, len(index))), index=index),
                  slippage=12.5)


def page(sessions: int = 30) -> str:
    r = record(sessions)
    return performance_page(r, title="Backtest: test <page>", subtitle=["a subtitle & more"],
                            rows=figures_of(r).rows(), footer="footer")


def test_the_page_is_one_document_whose_only_script_is_inline() -> None:
    text = page()
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    assert not re.search(r"<script[^>]*\bsrc\s*=", text, re.I), "a script loaded from elsewhere"
    assert not re.search(r"<(link|img|iframe)[^>]*(href|src)\s*=\s*[\"']?(https?:)?//", text, re.I)
    assert not re.search(r"""\bsrc\s*=\s*["']https?://""", text, re.I)
    assert "Plotly.newPlot" in text and len(text) > 1_000_000  # the library itself is in the file
    for chart in CHART_IDS:
        assert f'id="{chart}"' in text, chart
    assert "Backtest: test &lt;page&gt;" in text and "a subtitle &amp; more" in text  # text is escaped


def test_the_trades_listed_are_capped_and_counted() -> None:
    text = page()
    trades = len(record().trades)
    assert trades > MAX_TRADES
    assert f"Trades: {trades} (the first {MAX_TRADES} listed)" in text
    assert text.count("<tr><td>") == MAX_TRADES


DRAWN = """() => {
  const n = (sel) => document.querySelectorAll(sel).length;
  const line = (id) => Array.from(document.querySelectorAll(`#${id} .scatterlayer .trace path.js-line`))
      .filter((p) => (p.getAttribute('d') || '').length > 100).length;
  return {
    plots: n('.js-plotly-plot .main-svg'),
    equity: line('equity'),
    drawdown: line('drawdown'),
    contributions: n('#contributions .barlayer .point path'),
    daily: n('#daily .barlayer .point path'),
    monthly: n('#monthly .heatmaplayer image') + n('#monthly .heatmaplayer .hm'),
    monthlyText: Array.from(document.querySelectorAll('#monthly text')).map((t) => t.textContent),
    figures: n('#figures .figure'),
  };
}"""


@browser
def test_chromium_draws_every_chart_without_fetching_anything(tmp_path: Path) -> None:
    path = tmp_path / "backtest.html"
    path.write_text(page(sessions=30))
    drawn = draw(path, tmp_path / "backtest-report.png", 5, DRAWN)
    assert drawn["plots"] >= 5, drawn
    assert drawn["equity"] == 2, drawn  # the strategy and buy-and-hold
    assert drawn["drawdown"] == 1, drawn
    assert drawn["contributions"] == len(SYMBOLS), drawn
    assert drawn["daily"] == 30, drawn
    assert drawn["monthly"] >= 1 and {"Oct", "Nov"} <= set(drawn["monthlyText"]), drawn
    assert drawn["figures"] == len(figures_of(record()).rows()), drawn


def test_a_single_day_makes_the_same_page() -> None:
    """A day's record (one session, a few trades) has every chart too."""
    r = record(sessions=1, minutes=60)
    text = performance_page(r, title="2025-10-01", rows=figures_of(r).rows())
    for chart in CHART_IDS:
        assert f'id="{chart}"' in text, chart
    assert datetime(2025, 10, 1, 9, 30, tzinfo=ET).strftime("%Y-%m-%d %H:%M") in text  # the first trade, ET
