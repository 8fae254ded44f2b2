"""The day report's page: one self-contained HTML file whose charts headless Chromium draws without fetching
anything, for a day against its replay, a day without one, and several days; screenshots are kept under
``artifacts/`` (or ``$OPENBELL_ARTIFACTS``)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from day_fixture import DAY, seed_day
from sqlalchemy import Engine

from openbell.dayreport.page import day_page, range_page
from openbell.dayreport.summary import day_result
from page_browser import browser, draw


def self_contained(text: str) -> None:
    """One document that loads nothing from elsewhere, the plotting library inlined."""
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    assert not re.search(r"<script[^>]*\bsrc\s*=", text, re.I), "a script loaded from elsewhere"
    assert not re.search(r"<(link|img|iframe)[^>]*(href|src)\s*=\s*[\"']?(https?:)?//", text, re.I)
    assert not re.search(r"""\bsrc\s*=\s*["']https?://""", text, re.I)
    assert "Plotly.newPlot" in text and len(text) > 1_000_000


def test_the_day_page_is_self_contained_and_shows_the_comparison(engine: Engine) -> None:
    seed_day(engine)
    text = day_page(day_result(engine, DAY), footer="footer")
    self_contained(text)
    for chart in ("equity", "attribution", "decisions", "slippage", "price-0", "price-1"):
        assert f'id="{chart}"' in text, chart
    assert "openbell day report: 2025-11-20" in text
    assert "day_strategies:StepIn (recorded by the day&#x27;s live_trading step)" in text
    assert "late by 4 min" in text and "missed: no live decision" in text and "missed: refused by a limit" in text
    assert "max_order_notional 3016.0 over 2500.0" in text and "the trading cut-off passed" in text
    assert "<td>09:32</td><td>09:35</td><td>4</td>" in text  # the minutes without a live decision
    assert "no-replay" not in text


def test_a_day_without_a_replay_says_why_and_shows_live_trading(engine: Engine) -> None:
    seed_day(engine, strategy="gone_package.strategies:Gone")
    text = day_page(day_result(engine, DAY))
    self_contained(text)
    assert 'id="no-replay"' in text and "No replay of this day: the strategy" in text
    assert "does not import" in text
    for chart in ("equity", "decisions", "slippage", "price-0"):
        assert f'id="{chart}"' in text, chart
    assert 'id="attribution"' not in text


DRAWN = """() => {
  const n = (sel) => document.querySelectorAll(sel).length;
  const lines = (id) => Array.from(document.querySelectorAll(`#${id} .scatterlayer .trace path.js-line`))
      .filter((p) => (p.getAttribute('d') || '').length > 20).length;
  return {
    plots: n('.js-plotly-plot .main-svg'),
    equity: lines('equity'),
    waterfall: n('#attribution .waterfalllayer .point path'),
    decisions: n('#decisions .scatterlayer .point'),
    slippage: n('#slippage .barlayer .point path'),
    price: n('#price-0 .scatterlayer .point'),
    priceLine: lines('price-0'),
    days: n('#days-chart .barlayer .point path'),
  };
}"""


def _draw(path: Path, shot: Path, charts: int) -> dict[str, Any]:
    return draw(path, shot, charts, DRAWN)


@browser
def test_chromium_draws_every_chart_of_the_day(engine: Engine, tmp_path: Path) -> None:
    seed_day(engine)
    path = tmp_path / "day.html"
    path.write_text(day_page(day_result(engine, DAY)))
    drawn = _draw(path, tmp_path / "day-report.png", 6)
    assert drawn["plots"] >= 6, drawn
    assert drawn["equity"] == 3, drawn  # live, the replay, the account as recorded
    assert drawn["waterfall"] == 8, drawn  # the replay's P&L, six causes, live's P&L
    assert drawn["decisions"] >= 15 + 11 + 4, drawn  # the replay's minutes, live's decisions, the missed ones
    assert drawn["slippage"] == 2, drawn
    assert drawn["priceLine"] == 1 and drawn["price"] >= 2 + 3, drawn  # AAA: 2 fills, its replay orders


@browser
def test_chromium_draws_the_page_of_several_days(engine: Engine, tmp_path: Path) -> None:
    seed_day(engine)
    result = day_result(engine, DAY)
    path = tmp_path / "days.html"
    text = range_page([result], "2025-11-19", "2025-11-21", ["2025-11-19", "2025-11-21"])
    self_contained(text)
    assert "nothing recorded: 2025-11-19, 2025-11-21" in text
    path.write_text(text)
    drawn = _draw(path, tmp_path / "days-report.png", 2)
    assert drawn["equity"] == 2 and drawn["days"] == 2, drawn  # live and replay
