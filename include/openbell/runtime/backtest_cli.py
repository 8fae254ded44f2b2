"""``openbell backtest``: a strategy over past sessions, traded as live trading trades.

The bars come from openbell's Postgres (``--db``, else the same database ``openbell db`` finds) or, with
``--sim``, from the simulator's market. The figures are those of :func:`openbell.backtest.run_shares`: the
deployment's risk limits (:func:`openbell.params.run_defaults`), then the live
:class:`~openbell.policy.OrderPolicy` (whole shares, minimum notional, pre-trade limits), fills at each
minute's close paying ``--cost-bps`` of the traded notional; :func:`openbell.backtest.run` (weights,
vectorized) is shown beside them. The run defaults ``fractional`` and ``allow_short`` (or ``--fractional`` and
``--allow-short``, which can only turn them on) trade fractions and short sales; the bars do not say which
assets are fractionable or shortable, so every symbol is taken as both, and the header says so. ``--html``
writes the page of :mod:`openbell.performance.page`.

Bad input is refused before any work with one line on stderr and exit code 2; nothing is written then.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from openbell.dberrors import DatabaseUnavailable, redact
from openbell.policy import OrderIntent, OrderPolicy
from openbell.runtime.backtest_data import BacktestInputError, Span, simulator_bars, span, state_url, stored_bars
from openbell.runtime.command_kit import Parser, output_path, refused, write_whole
from openbell.strategy import strategy_class
from openbell.strategy.contract import vector_twin

if TYPE_CHECKING:
    from openbell.backtest import BacktestResult
    from openbell.params import RunParams
    from openbell.performance import Figures, Record

SYMBOL = re.compile(r"[A-Z0-9]+(?:[./][A-Z0-9]+)*")
PROG = "openbell backtest"


def _parser() -> argparse.ArgumentParser:
    p = Parser(prog=PROG, description="Backtest a strategy over stored or simulated sessions and print its figures.",
               epilog="Without --db and OPENBELL_DATABASE_URL the bars are read from the openbell database of the "
                      "embedded Postgres; --sim reads the simulator's market instead (loopback only).")
    add = p.add_argument
    add("--strategy", required=True, metavar="S", help="registered strategy name")
    add("--params", metavar="JSON", help="strategy parameters as a JSON object (default: the strategy's defaults)")
    add("--from", dest="start", required=True, type=date.fromisoformat, metavar="D1", help="first session, YYYY-MM-DD")
    add("--to", dest="end", required=True, type=date.fromisoformat, metavar="D2", help="last session, YYYY-MM-DD")
    add("--universe", metavar="SYM,SYM,...", help="comma-separated symbols (default: the run's default universe)")
    add("--html", type=Path, metavar="FILE", help="write the report page to this file")
    add("--force", action="store_true", help="overwrite the --html file if it exists")
    add("--sim", action="store_true", help="backtest the simulator's market instead of stored bars")
    add("--db", metavar="URL", help="state database URL (default: OPENBELL_DATABASE_URL or the embedded one)")
    add("--cost-bps", type=float, default=1.0, metavar="X", help="costs in basis points of traded notional (1.0)")
    add("--cash", type=float, default=100_000.0, metavar="X", help="capital each session starts with (100000)")
    add("--warmup-sessions", type=int, metavar="N",
        help="sessions before --from that warm the signals up (default: the run's warmup_sessions)")
    add("--fractional", action="store_true",
        help="size orders in fractions of a share, every symbol taken as fractionable (shorts stay whole shares);"
             " only turns it on: the run default fractional=true cannot be turned off here")
    add("--allow-short", action="store_true",
        help="let negative target weights become short sales, every symbol taken as shortable and easy to"
             " borrow; only turns it on: the run default allow_short=true cannot be turned off here")
    return p


@dataclass(frozen=True)
class Plan:
    """A checked request."""

    strategy: str
    params: dict[str, Any]
    span: Span
    universe: list[str]
    cost_bps: float
    cash: float
    html: Path | None
    force: bool
    settings: RunParams  # the deployment's run defaults: risk limits and order rules
    fractional: bool = False  # the run default or --fractional: every symbol sized in fractions
    allow_short: bool = False  # the run default or --allow-short: every symbol may be sold short


def _universe(text: str | None, default: list[str]) -> list[str]:
    if text is None:
        return list(default)
    symbols = [s.strip().upper() for s in text.split(",") if s.strip()]
    bad = [s for s in symbols if len(s) > 10 or not SYMBOL.fullmatch(s)]
    if not symbols or bad:
        raise BacktestInputError(f"--universe: not a symbol: {', '.join(bad) or repr(text)}"
                                 " (comma-separated tickers, e.g. TQQQ,SQQQ)")
    twice = sorted({s for s in symbols if symbols.count(s) > 1})
    if twice:
        raise BacktestInputError(f"--universe names {', '.join(twice)} more than once")
    return symbols


def plan(args: argparse.Namespace) -> Plan:
    """Every input checked, before any data is read; :class:`BacktestInputError` names the first refused."""
    from openbell.params import InvalidRunParams, run_defaults
    from openbell.strategy import InvalidParams, strategy_class, validate_params

    try:
        settings = run_defaults()
        strategy_class(args.strategy)
        raw = json.loads(args.params) if args.params is not None else None
        if raw is not None and not isinstance(raw, dict):
            raise BacktestInputError(f"--params must be a JSON object, got {args.params!r}")
        params = validate_params(args.strategy, raw).model_dump()
    except json.JSONDecodeError as exc:
        raise BacktestInputError(f"--params is not JSON: {exc}") from None
    except (InvalidParams, InvalidRunParams) as exc:
        raise BacktestInputError(str(exc)) from None
    warmup = settings.warmup_sessions if args.warmup_sessions is None else args.warmup_sessions
    if not 0 <= warmup <= 60:
        raise BacktestInputError(f"--warmup-sessions must be in 0..60, got {warmup}")
    when = span(args.start, args.end, warmup)
    universe = _universe(args.universe, list(settings.universe))
    if not (math.isfinite(args.cost_bps) and args.cost_bps >= 0):
        raise BacktestInputError(f"--cost-bps must be a number >= 0, got {args.cost_bps}")
    if not (math.isfinite(args.cash) and args.cash > 0):
        raise BacktestInputError(f"--cash must be a number > 0, got {args.cash}")
    html = output_path(args.html, args.force, BacktestInputError)
    return Plan(args.strategy, params, when, universe, args.cost_bps, args.cash, html, args.force, settings,
                fractional=settings.fractional or args.fractional, allow_short=settings.allow_short or args.allow_short)


class Progress:
    """Lines on stderr as the work goes (one line rewritten in place on a terminal)."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.started = time.monotonic()
        self.written = False

    def __call__(self, message: str) -> None:
        line = f"{PROG}: {message} [{time.monotonic() - self.started:.1f}s]"
        self.stream.write(f"\r\x1b[2K{line}" if self.tty else line + "\n")
        self.stream.flush()
        self.written = True

    def done(self) -> None:
        """End the line rewritten in place, if any."""
        if self.tty and self.written:
            self.stream.write("\n")
            self.written = False


@dataclass(frozen=True)
class _AnnouncingPolicy(OrderPolicy):
    """The order policy, calling ``closing`` whenever it closes every position (a session's last bar)."""

    closing: Callable[[], None] = field(default=lambda: None, compare=False, repr=False)

    def close_all(self, holdings: Mapping[str, float]) -> tuple[OrderIntent, ...]:
        self.closing()
        return super().close_all(holdings)


@dataclass
class Outcome:
    """What a backtest printed and drew."""

    figures: Figures
    record: Record
    vector: BacktestResult
    lines: list[str]


def kinds(p: Plan) -> str:
    """How the orders are sized and which sides they take, as the header says it."""
    size = "fractions of a share (every symbol taken as fractionable)" if p.fractional else "whole shares"
    short = ", short sales allowed (every symbol taken as shortable and easy to borrow)" if p.allow_short else ""
    kind = {"limit": ", marketable limit orders (filled at the close as market orders)",
            "notional": ", notional buys (filled at the close as market orders of the shares expected)"}
    return size + short + kind.get(p.settings.order_type, "")


def _vector(v: BacktestResult) -> str:
    return f"{v.total_return:+.2%}, Sharpe {v.score:.2f}, max drawdown {v.max_drawdown:.2%}"


def run(p: Plan, bars: pd.DataFrame, progress: Callable[[str], None], source: str) -> Outcome:
    """The share-level backtest of ``p`` over ``bars``, its figures and the lines printed."""
    from openbell import backtest
    from openbell.performance import backtest_record, figures_of
    from openbell.strategy.risk import RiskLimits

    s = p.settings
    limits = RiskLimits(max_weight=s.max_weight, max_gross=s.max_gross, daily_loss_limit=s.daily_loss_limit,
                        allow_short=p.allow_short)  # shortable None: any symbol
    days = [x.date for x in p.span.sessions]
    done = iter(range(1, len(days) + 1))

    def closed() -> None:
        n = next(done, len(days))
        progress(f"traded {days[n - 1]} ({n}/{len(days)})")

    policy = _AnnouncingPolicy(min_notional=s.min_notional, band=s.rebalance_band, limits=s.order_limits(),
                               fractional=frozenset(p.universe) if p.fractional else frozenset(),
                               order_type=s.order_type, limit_collar=s.limit_collar, closing=closed)
    common: dict[str, Any] = {"warmup_sessions": len(p.span.warmup), "cost_bps": p.cost_bps, "limits": limits,
                              "universe": p.universe}
    try:
        shares = backtest.run_shares(p.strategy, p.params, bars, cash=p.cash, policy=policy, **common)
        vector = backtest.run(p.strategy, p.params, bars, **common)
    except ValueError as exc:
        raise BacktestInputError(f"the backtest cannot run on these bars: {exc}") from None
    record = backtest_record(shares, bars, p.universe)
    figures = figures_of(record)
    lines = [
        f"{PROG}: {p.strategy} from {p.span.sessions[0].date} to {p.span.sessions[-1].date},"
        f" {len(p.span.sessions)} session(s) after {len(p.span.warmup)} warm-up, bars from {source}",
        f"params: {json.dumps(p.params, sort_keys=True)}",
        f"targets: {'the vectorized twin' if vector_twin(strategy_class(p.strategy)) else 'on_minute replayed'}",
        f"universe: {' '.join(p.universe)}",
        f"each session starts flat with {p.cash:,.2f} and ends flat; risk limits max_weight {s.max_weight},"
        f" max_gross {s.max_gross}, daily_loss_limit {s.daily_loss_limit}; {kinds(p)}, min notional"
        f" {s.min_notional:g}, rebalance band {s.rebalance_band:g}; fills at each minute's close, costs"
        f" {p.cost_bps:g} bps of traded notional",
        "",
        *(f"{label:<28}{value}" for label, value in figures.rows()),
        "",
        "P&L by symbol (net of costs):",
        *(f"  {sym:<6}{pnl:>+14,.2f}  {pnl / p.cash:+.2%}" for sym, pnl in figures.per_symbol.items()),
        "",
        f"vectorized weights (backtest.run, compounding): total return {_vector(vector)}",
    ]
    return Outcome(figures, record, vector, lines)


def write_page(p: Plan, outcome: Outcome, source: str) -> int:
    """Write the page to ``p.html`` (whole, or not at all); its size in bytes."""
    from openbell.performance import performance_page

    assert p.html is not None
    rows = [*outcome.figures.rows(), ("vectorized weights (compounding)", _vector(outcome.vector))]
    subtitle = [f"{len(p.span.sessions)} session(s) from {p.span.sessions[0].date} to {p.span.sessions[-1].date}"
                f" after {len(p.span.warmup)} warm-up; bars from {source}",
                f"params {json.dumps(p.params, sort_keys=True)}", f"universe {' '.join(p.universe)}",
                f"{p.cash:,.0f} each session, {kinds(p)} through the live order policy, fills at each minute's"
                f" close, costs {p.cost_bps:g} bps of traded notional"]
    page = performance_page(outcome.record, title=f"Backtest: {p.strategy}", subtitle=subtitle, rows=rows,
                            footer=f"openbell backtest, {time.strftime('%Y-%m-%d %H:%M %Z')}")
    return write_whole(p.html, page.encode(), p.force, BacktestInputError)


def main(argv: list[str] | None = None) -> int:
    """``openbell backtest --strategy S --from D1 --to D2 [options]``; exit 2 with one line when it cannot."""
    from openbell.paths import home_dir
    from openbell.pg.server import EmbeddedPostgresError

    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    progress = Progress()
    try:
        p = plan(args)
        if args.sim:
            source = "the simulator"
            bars = simulator_bars(p.universe, p.span, progress)
        else:
            url = state_url(args.db, home_dir())
            source = redact(url)
            bars = stored_bars(url, p.universe, p.span, progress)
        outcome = run(p, bars, progress, source)
        size = write_page(p, outcome, source) if p.html else 0
    except (BacktestInputError, DatabaseUnavailable, EmbeddedPostgresError) as exc:
        progress.done()
        return refused(PROG, exc)
    progress.done()
    print("\n".join(outcome.lines))
    if p.html:
        print(f"wrote {p.html} ({size / 1e6:.1f} MB)")
    return 0
