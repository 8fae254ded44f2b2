"""The day report's page: one self-contained HTML file (the look and the inlined plotting library of
:mod:`openbell.performance.page`) for a recorded day against its replay, or for several days.

A day: the figures (P&L live and replayed, the difference by cause, decisions, orders, slippage), the
intraday equity, the step from the replay's P&L to live's, the minutes decided and missed, each fill's
slippage, each traded symbol's price with its orders and fills, then the tables. Without a replay the page
says why and shows the live part. Several days: a row per day, the combined equity and each day's P&L.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

import pandas as pd

from openbell.calendar import ET
from openbell.dayreport import charts
from openbell.dayreport.live import MINUTE
from openbell.dayreport.replay import NoReplay
from openbell.dayreport.summary import DayResult, totals
from openbell.performance import charts as performance_charts
from openbell.performance.page import chart_html, document, figures_html

MAX_ROWS = 500  # rows listed per table (the first ones); the count is always given
MAX_SYMBOLS = 12  # price charts drawn, the most traded symbols first


def _section(body: str) -> str:
    return f"<section>{body}</section>"


def _cell(text: str) -> str:
    """A table cell; a negative amount is marked as bad."""
    bad = text.startswith("-") and text[1:2].isdigit()
    return f'<td class="bad">{html.escape(text)}</td>' if bad else f"<td>{html.escape(text)}</td>"


def _table(table_id: str, title: str, head: Sequence[str], rows: Sequence[Sequence[str]], *, open_: bool = True) -> str:
    """A folded table; cells are escaped, a cell starting with ``-`` is marked as bad."""
    shown = rows[:MAX_ROWS]
    more = f" (the first {MAX_ROWS} listed)" if len(rows) > MAX_ROWS else ""
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(_cell(c) for c in r) + "</tr>" for r in shown)
    return (f'<section><details id="{table_id}"{" open" if open_ and rows else ""}><summary>{html.escape(title)}:'
            f" {len(rows)}{more}</summary><table class=\"trades\"><thead><tr>{th}</tr></thead><tbody>{body}</tbody>"
            "</table></details></section>")


def _t(t: object, fmt: str = "%H:%M") -> str:
    return "" if t is None or pd.isna(t) else f"{pd.Timestamp(t).tz_convert(ET):{fmt}}"  # type: ignore[arg-type]


def _money(x: float | None) -> str:
    return "n/a" if x is None else f"{x:+,.2f}"


def _ranges(minutes: pd.DatetimeIndex) -> list[tuple[str, str, str]]:
    """Consecutive minutes as (from, to, count) in New York time."""
    out: list[tuple[str, str, str]] = []
    start = prev = None
    n = 0
    for m in [*list(minutes), None]:
        if m is not None and prev is not None and m - prev == MINUTE:
            prev, n = m, n + 1
            continue
        if start is not None:
            out.append((_t(start), _t(prev), str(n)))
        start = prev = m
        n = 1
    return out


def day_rows(result: DayResult) -> list[tuple[str, str]]:
    """The day's figures, (label, value)."""
    r, c, day = result.row(), result.comparison, result.day
    traded = float((c.fills["qty"] * c.fills["reference"]).sum()) if len(c.fills) else 0.0
    rows = [("live P&L", f"{_money(c.live_pnl)} (fills, open positions at the last close)"),
            ("replay P&L", f"n/a: {result.replay.reason}" if isinstance(result.replay, NoReplay)
             else _money(c.replay_pnl)),
            ("difference (live - replay)", _money(c.difference))]
    rows += [(f"  of which {k}", _money(v)) for k, v in c.attribution.items()]
    rows += [
        ("account equity change", _money(c.equity_change) + f" (from {day.capital:,.2f} at the open)"),
        ("minutes decided", f"{r['minutes'] - r['missed_minutes']} of {r['minutes']} with bars;"
                            f" {r['missed_minutes']} missed"),
        ("live orders", f"{r['orders']} from decisions, {r['fills']} fills; {r['refusals']} refused or not sent"),
    ]
    if result.replayed is not None:
        rows.append(("replay orders", f"{len(c.orders)} before the cut-off: {c.count('on time')} on time,"
                                      f" {c.count('late')} late, {c.count('missed')} missed; {len(c.live_only)}"
                                      " live orders match none"))
    bps = f" ({-c.slippage / traded * 1e4:.2f} bps of traded)" if traded else ""
    rows.append(("slippage against the decision price", f"{_money(c.slippage)}{bps}"))
    return rows


def _subtitle(result: DayResult) -> list[str]:
    s, day = result.day.settings, result.day
    lines = [f"strategy {s.strategy} ({s.source}); parameter versions {result.versions()}",
             f"universe {' '.join(s.universe)}; max_weight {s.max_weight:g}, max_gross {s.max_gross:g},"
             f" daily_loss_limit {s.daily_loss_limit:g}, min notional {s.min_notional:g}, rebalance band"
             f" {s.rebalance_band:g};"
             f" trading cut-off {_t(day.trade_until)} ET"]
    rep = result.replayed
    if rep is not None:
        lines.append(f"replay: warmed up on {rep.warmup_sessions} stored session(s) before the day, every minute"
                     f" decided, fills at the decided minute's close, no costs, closed at the cut-off"
                     + (f"; {rep.kinds}" if rep.kinds else ""))
    return lines


def _price_sections(result: DayResult) -> list[str]:
    day, c = result.day, result.comparison
    replayed = result.replayed
    rep = replayed.result.orders if replayed is not None else pd.DataFrame(columns=["time", "symbol", "side", "qty",
                                                                                    "price", "kind"])
    counts = pd.concat([day.fills["symbol"], rep["symbol"], c.refused["symbol"]]).value_counts()
    bars = day.day_bars.assign(timestamp=pd.to_datetime(day.day_bars["timestamp"], utc=True))
    out = []
    for i, symbol in enumerate(list(counts.index)[:MAX_SYMBOLS]):
        closes = bars[bars["symbol"] == symbol].set_index("timestamp")["close"].sort_index()
        closes.index = closes.index + MINUTE  # a bar's close is its minute's end
        fig = charts.price_chart(symbol, closes, c.fills[c.fills["symbol"] == symbol],
                                 c.refused[c.refused["symbol"] == symbol], rep[rep["symbol"] == symbol])
        out.append(_section(chart_html(fig, f"price-{i}")))
    return out


def _tables(result: DayResult) -> list[str]:
    c = result.comparison
    out = []
    if result.replayed is not None:
        out.append(_table("orders", "Replay orders and what live did", ["minute (ET)", "symbol", "side", "qty",
                                                                        "price", "live", "live minute", "live qty"],
                          [[_t(o.minute), o.symbol, o.side, f"{o.qty:g}", f"{o.price:,.2f}",
                            o.status + (f" by {o.delay:.0f} min" if o.status == "late" else "")
                            + (f": {o.cause}" if o.cause else ""), _t(o.live_minute),
                            "" if pd.isna(o.live_qty) else f"{o.live_qty:g}"] for o in c.orders.itertuples()]))
        out.append(_table("live-only", "Live orders the replay did not make", ["minute (ET)", "symbol", "side", "qty",
                                                                                "status", "order"],
                          [[_t(o.minute), o.symbol, o.side, f"{o.qty:g}", o.status, o.client_order_id]
                           for o in c.live_only.itertuples()], open_=False))
    out.append(_table("refused", "Orders refused or not sent", ["minute (ET)", "symbol", "side", "qty", "what", "why"],
                      [[_t(r.minute), r.symbol, r.side, f"{r.qty:g}", {"limit": "refused by a limit", "rejected":
                        "rejected by the broker", "not_sent": "not sent"}.get(r.kind, r.kind), r.why]
                       for r in c.refused.itertuples()]))
    out.append(_table("missed", "Minutes without a live decision", ["from (ET)", "to (ET)", "minutes"],
                      _ranges(c.missed_minutes)))
    out.append(_table("fills", "Live fills against the decision price", ["time (ET)", "symbol", "side", "qty",
                                                                         "price", "decision price", "a share",
                                                                         "effect", "origin"],
                      [[_t(f.ts, "%H:%M:%S"), f.symbol, f.side, f"{f.qty:g}", f"{f.price:,.4f}",
                        f"{f.reference:,.4f}", f"{f.slippage:+.4f}", f"{f.effect:+,.2f}", str(f.origin or "")]
                       for f in c.fills.itertuples()], open_=False))
    return out


def day_page(result: DayResult, *, footer: str = "") -> str:
    """The page of one recorded day against its replay."""
    c, day = result.comparison, result.day
    rep = result.replayed
    sections = [figures_html(day_rows(result))]
    if isinstance(result.replay, NoReplay):
        sections.append(f'<section class="notice" id="no-replay">No replay of this day: '
                        f"{html.escape(result.replay.reason)}. The page shows live trading only.</section>")
    last = max([*c.minutes[-1:], *c.fills["ts"].dt.floor("min")], default=c.live_path.index[-1])
    path = c.live_path[c.live_path.index <= last]
    live = (day.capital + path).set_axis(path.index + MINUTE)
    replay = None if rep is None else (rep.result.equity).set_axis(rep.result.equity.index + MINUTE)
    sections.append(_section(chart_html(charts.equity_chart(live, replay, day.equity), "equity")))
    if rep is not None and c.replay_pnl is not None:
        sections.append(_section(chart_html(charts.waterfall_chart(c.replay_pnl, c.attribution, c.live_pnl),
                                            "attribution")))
    late = c.orders[c.orders["status"] == "late"] if len(c.orders) else c.orders
    decided = pd.DatetimeIndex(sorted(day.decisions["ts"])) if len(day.decisions) else pd.DatetimeIndex([], tz="UTC")
    sections.append(_section(chart_html(charts.decisions_chart(c.minutes, decided, c.missed_minutes, late),
                                        "decisions")))
    if len(c.fills):
        sections.append(_section(chart_html(charts.slippage_chart(c.fills), "slippage")))
    sections += _price_sections(result)
    sections += _tables(result)
    return document(f"openbell day report: {result.date}", _subtitle(result), sections, footer)


def _combined(results: Sequence[DayResult]) -> tuple[pd.Series, pd.Series | None]:
    """Live and replay equity over the days: the first day's capital plus the P&L so far (no compounding)."""
    capital = results[0].day.capital
    live, replay, at = [], [], 0.0
    for r in results:
        live.append(at + r.comparison.live_path)
        at += r.comparison.live_pnl
    at = 0.0
    for r in results:
        path = r.comparison.replay_path
        if path is None:
            continue
        replay.append((at + path).reindex(r.comparison.live_path.index).ffill().fillna(at))
        at += float(r.comparison.replay_pnl or 0.0)
    left = capital + pd.concat(live)
    right = None if len(replay) != len(results) else capital + pd.concat(replay)
    return left.rename("live"), None if right is None else right.rename("replay")


def range_page(results: Sequence[DayResult], start: object, end: object, absent: Sequence[object], *,
               footer: str = "") -> str:
    """The page of several recorded days: a row per day, the combined equity, each day's P&L."""
    total = totals(list(results))
    rows = [("live P&L", _money(total["live_pnl"])), ("replay P&L (days replayed)", _money(total["replay_pnl"])),
            ("difference (days replayed)", _money(total["difference"])),
            ("days", f"{len(results)} recorded" + (f", {len(absent)} with nothing recorded" if absent else "")),
            ("live orders", f"{total['orders']} from decisions; {total['refusals']} refused or not sent"),
            ("minutes missed", str(total["missed_minutes"]))]
    table = [[r["date"], _money(r["live_pnl"]), _money(r["replay_pnl"]), _money(r["difference"]), str(r["orders"]),
              str(r["refusals"]), str(r["missed_minutes"]), str(r["late_orders"]), _money(r["slippage"]),
              f"no replay: {r['no_replay']}" if r["no_replay"] else ""] for r in (x.row() for x in results)]
    live, replay = _combined(results)
    frame = pd.DataFrame([x.row() for x in results])
    sections = [figures_html(rows),
                _table("days", "Days", ["date", "live P&L", "replay P&L", "difference", "orders", "refused",
                                        "missed minutes", "late orders", "slippage", "note"], table),
                _section(chart_html(performance_charts.equity_chart(live, replay, label="live",
                                                                    benchmark_label="replay"), "equity")),
                _section(chart_html(charts.days_chart(frame), "days-chart"))]
    subtitle = [f"{len(results)} recorded session(s) from {start} to {end}",
                "each day: live trading against the replay of its strategy over its stored bars"]
    if absent:
        subtitle.append("nothing recorded: " + ", ".join(str(d) for d in absent))
    return document(f"openbell report: {start} to {end}", subtitle, sections, footer)
