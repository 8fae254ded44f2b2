"""``openbell backtest`` end to end: over bars stored in a scratch Postgres, over the simulator's market, and
every bad input refused with one line, exit code 2 and nothing written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import Engine

from openbell import backtest as backtest_module
from openbell.backtest import ShareResult, run_shares
from openbell.calendar import Session, sessions_between
from openbell.params import run_defaults
from openbell.policy import OrderPolicy
from openbell.runtime.backtest_cli import main
from openbell.store.bars import load_bars, upsert_bars
from openbell.strategy.risk import RiskLimits

UNIVERSE = ["TQQQ", "SQQQ", "SSO", "SDS"]
DAYS = sessions_between(date(2025, 11, 14), date(2025, 11, 20))  # 14 (warm-up), 17, 18, 19, 20
FIGURES = ("total return", "buy-and-hold, equal weight", "Sharpe, annualized", "Sortino, annualized",
           "max drawdown", "turnover", "trades", "costs (fees and slippage)", "slippage at the next open",
           "exposure", "sessions", "P&L by symbol")


def synthetic_bars(days: list[Session], *, until: str | None = None, seed: int = 5) -> pd.DataFrame:
    """A bar every minute for :data:`UNIVERSE` (two inverse pairs on trending random walks)."""
    rng = np.random.default_rng(seed)
    frames = []
    for s in days:
        stamps = s.minutes()
        if until is not None:
            stamps = stamps[stamps.tz_convert("America/New_York").strftime("%H:%M") < until]
        for k, (up, down) in enumerate((("TQQQ", "SQQQ"), ("SSO", "SDS"))):
            factor = rng.normal(3e-4 * (1 if k else -1), 8e-4, len(stamps))
            for sym, lev in ((up, 1.0), (down, -1.0)):
                close = (60.0 + 20 * k) * np.exp(np.cumsum(lev * factor + rng.normal(0, 1e-4, len(stamps))))
                open_ = np.r_[close[0], close[:-1]]
                frames.append(pd.DataFrame({
                    "timestamp": stamps, "symbol": sym, "open": open_, "close": close,
                    "high": np.maximum(open_, close) * 1.0005, "low": np.minimum(open_, close) * 0.9995,
                    "volume": 1000.0}))
    return pd.concat(frames, ignore_index=True)


def backtest(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    try:
        code = main(list(args))
    except SystemExit as exc:  # argparse's refusals
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def refused(capsys: pytest.CaptureFixture[str], *args: str, needles: tuple[str, ...]) -> str:
    code, out, err = backtest(capsys, *args)
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert out == ""
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


BASE = ("--strategy", "momentum_rotation", "--universe", ",".join(UNIVERSE), "--warmup-sessions", "1")


# -- over stored bars ------------------------------------------------------------------------------------


def test_a_backtest_over_stored_bars_prints_the_share_level_figures(
        engine: Engine, state_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    upsert_bars(engine, synthetic_bars(DAYS), source="test")
    html = tmp_path / "report.html"
    code, out, err = backtest(capsys, *BASE, "--from", "2025-11-17", "--to", "2025-11-20", "--db", state_url,
                              "--cost-bps", "2", "--html", str(html))
    assert code == 0, err
    for label in FIGURES:
        assert label in out, label
    assert "4 session(s) after 1 warm-up" in out and "vectorized weights (backtest.run" in out
    assert "targets: the vectorized twin" in out
    # the figures are run_shares' with the deployment's limits and order policy
    d = run_defaults()
    expected = run_shares("momentum_rotation", None, load_bars(engine, UNIVERSE, DAYS[0].open, DAYS[-1].close),
                          warmup_sessions=1, cost_bps=2.0, universe=UNIVERSE,
                          limits=RiskLimits(max_weight=d.max_weight, max_gross=d.max_gross,
                                            daily_loss_limit=d.daily_loss_limit),
                          policy=OrderPolicy(min_notional=d.min_notional, band=d.rebalance_band,
                                             limits=d.order_limits()))
    assert len(expected.orders) > 10
    assert f"(P&L {expected.total_pnl:+,.2f} on 100,000.00)" in out
    assert re.search(rf"^trades +{len(expected.orders)} \(", out, re.M), out
    per_symbol = expected.orders.assign(flow=np.where(expected.orders["side"] == "sell", 1, -1)
                                        * expected.orders["notional"] - expected.orders["cost"])
    for sym, pnl in per_symbol.groupby("symbol")["flow"].sum().items():
        assert re.search(rf"^  {sym} +{re.escape(f'{pnl:+,.2f}')}  ", out, re.M), (sym, pnl, out)
    # progress, one line per session, on stderr
    assert [f"traded {s.date} ({i}/4)" in err for i, s in enumerate(DAYS[1:], 1)] == [True] * 4, err
    assert f"wrote {html}" in out
    text = html.read_text()
    assert "Backtest: momentum_rotation" in text and not re.search(r"<script[^>]*\bsrc\s*=", text)


def test_sessions_without_stored_bars_are_named_with_how_to_fetch_them(
        engine: Engine, state_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    upsert_bars(engine, synthetic_bars([DAYS[0], DAYS[2]]), source="test")
    upsert_bars(engine, synthetic_bars([DAYS[3]], until="11:00"), source="test")
    upsert_bars(engine, synthetic_bars([DAYS[4]]).query("symbol != 'SDS'"), source="test")
    html = tmp_path / "report.html"
    line = refused(capsys, *BASE, "--from", "2025-11-17", "--to", "2025-11-20", "--db", state_url,
                   "--html", str(html),
                   needles=("for 3 of 5 session(s)", "with the 1 warm-up session(s) before --from",
                            "2025-11-17 (no bars)", "2025-11-19 (bars only 09:30-11:00 ET)",
                            "2025-11-20 (none of SDS)",
                            "`airflow backfill create --dag-id trading_day --from-date 2025-11-14"
                            " --to-date 2025-11-20T23:59`", "--sim"))
    assert "2025-11-18 (" not in line and "2025-11-14 (" not in line
    assert not html.exists()


def test_an_empty_database_names_every_session(state_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    refused(capsys, *BASE, "--from", "2025-11-20", "--to", "2025-11-20", "--db", state_url,
            needles=("for 2 of 2 session(s)", "2025-11-19 (no bars), 2025-11-20 (no bars)"))


def test_symbols_never_stored_are_unknown(engine: Engine, state_url: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    upsert_bars(engine, synthetic_bars(DAYS), source="test")
    refused(capsys, "--strategy", "momentum_rotation", "--universe", "TQQQ,ZZZZ,SQQQ", "--from", "2025-11-20",
            "--to", "2025-11-20", "--db", state_url,
            needles=("unknown symbol(s) ZZZZ: no bar of them is stored", "stored: SDS, SQQQ, SSO, TQQQ"))


def test_without_db_the_bars_come_from_openbell_database_url(
        engine: Engine, state_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    upsert_bars(engine, synthetic_bars(DAYS[-2:]), source="test")
    monkeypatch.setenv("OPENBELL_DATABASE_URL", state_url)
    code, out, err = backtest(capsys, *BASE, "--from", "2025-11-20", "--to", "2025-11-20")
    assert code == 0, err
    assert "1 session(s) after 1 warm-up, bars from postgresql" in out and "\ntrades " in out


def test_without_a_database_it_says_to_pass_one_or_use_the_simulator(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("OPENBELL_DATABASE_URL", raising=False)
    monkeypatch.setenv("OPENBELL_HOME", str(tmp_path / "home"))
    refused(capsys, *BASE, "--from", "2025-11-20", "--to", "2025-11-20",
            needles=("no embedded Postgres under", "pass --db URL", "--sim"))


# -- order kinds: fractions and short sales ---------------------------------------------------------------

LAGGARDS = ("--strategy", "ob_example.laggards:LeadersAndLaggards", "--params", '{"lookback": 10}', "--universe",
            ",".join(UNIVERSE), "--warmup-sessions", "1", "--from", "2025-11-19", "--to", "2025-11-20")
WHOLE = "; whole shares, "
SHORTS = "short sales allowed (every symbol taken as shortable and easy to borrow)"
FRACTIONS = "fractions of a share (every symbol taken as fractionable)"


def traded(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
           *args: str) -> tuple[str, ShareResult]:
    """The command's output and the share-level result it printed."""
    seen: list[ShareResult] = []

    def spy(*a: Any, **k: Any) -> ShareResult:
        seen.append(run_shares(*a, **k))
        return seen[-1]

    monkeypatch.setattr(backtest_module, "run_shares", spy)
    code, out, err = backtest(capsys, *args)
    assert code == 0, err
    return out, seen[-1]


def _opened_shorts(r: ShareResult) -> pd.DataFrame:
    """The sales that left a position short."""
    after = r.positions.stack()
    ends = {(t, sym): q for (t, sym), q in after.items()}
    sells = r.orders[(r.orders["side"] == "sell") & (r.orders["kind"] == "policy")]
    return sells[[ends[(t, sym)] < 0 for t, sym in zip(sells["time"], sells["symbol"], strict=True)]]


def test_allow_short_sells_the_short_targets_short_and_without_it_they_are_clipped(
        engine: Engine, state_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("OPENBELL_RUN_DEFAULTS", raising=False)
    upsert_bars(engine, synthetic_bars(DAYS[-3:]), source="test")
    out, shorted = traded(monkeypatch, capsys, *LAGGARDS, "--db", state_url, "--allow-short")
    assert SHORTS in out and WHOLE in out
    opened = _opened_shorts(shorted)
    assert len(opened) > 0 and (shorted.positions < 0).any().any()
    short = shorted.positions.where(shorted.positions < 0).stack().dropna()
    assert (short == short.round()).all()  # a short is whole shares
    assert (shorted.positions.iloc[-1] == 0).all()  # closed at the session's last bar
    out, clipped = traded(monkeypatch, capsys, *LAGGARDS, "--db", state_url)
    assert "short sales" not in out and "; whole shares, min notional" in out
    assert len(clipped.orders) > 0 and (clipped.positions >= 0).all().all() and _opened_shorts(clipped).empty
    # the run default turns them on as the flag does
    monkeypatch.setenv("OPENBELL_RUN_DEFAULTS", '{"allow_short": true}')
    out, by_default = traded(monkeypatch, capsys, *LAGGARDS, "--db", state_url)
    assert SHORTS in out and by_default.orders.equals(shorted.orders)


@pytest.fixture
def one_day(engine: Engine, state_url: str, monkeypatch: pytest.MonkeyPatch) -> tuple[str, ...]:
    """The arguments of a one-session momentum backtest over stored bars, with no run defaults set."""
    monkeypatch.delenv("OPENBELL_RUN_DEFAULTS", raising=False)
    upsert_bars(engine, synthetic_bars(DAYS[-2:]), source="test")
    return (*BASE, "--from", "2025-11-20", "--to", "2025-11-20", "--db", state_url)


def test_fractional_sizes_orders_in_fractions_of_a_share(
        one_day: tuple[str, ...], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    args = one_day
    out, whole = traded(monkeypatch, capsys, *args)
    assert WHOLE in out and "fractions" not in out
    assert (whole.orders["qty"] == whole.orders["qty"].round()).all()
    out, fractions = traded(monkeypatch, capsys, *args, "--fractional")
    assert f"; {FRACTIONS}, min notional" in out, out
    qty = fractions.orders["qty"]
    assert (qty != qty.round()).sum() > len(qty) // 2
    assert (qty == qty.round(9)).all()  # at most 9 decimals, as Alpaca takes them


def test_notional_buys_fill_as_market_orders_for_the_shares_their_whole_cents_buy(
        one_day: tuple[str, ...], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    args = one_day
    monkeypatch.setenv("OPENBELL_RUN_DEFAULTS", '{"fractional": true, "order_type": "notional"}')
    out, notional = traded(monkeypatch, capsys, *args)
    assert f"; {FRACTIONS}, notional buys (filled at the close as market orders of the shares expected)" in out
    buys = notional.orders[(notional.orders["side"] == "buy") & (notional.orders["kind"] == "policy")]
    assert len(buys) > 0 and ((buys["notional"] - buys["notional"].round(2)).abs() < 1e-6).all()  # whole cents
    monkeypatch.setenv("OPENBELL_RUN_DEFAULTS", '{"fractional": true}')
    _, fractions = traded(monkeypatch, capsys, *args)
    cents = fractions.orders[fractions.orders["side"] == "buy"]["notional"]
    assert ((cents - cents.round(2)).abs() > 1e-6).any()  # sized by quantity, the cost is not whole cents


def test_allow_short_changes_nothing_for_a_long_only_strategy(
        one_day: tuple[str, ...], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    args = one_day
    out, long_only = traded(monkeypatch, capsys, *args)
    out_short, allowed = traded(monkeypatch, capsys, *args, "--allow-short")
    lines, lines_short = out.splitlines(), out_short.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("each session starts flat"))
    assert SHORTS in lines_short[header] and SHORTS not in lines[header]
    assert lines[:header] + lines[header + 1:] == lines_short[:header] + lines_short[header + 1:]
    assert len(long_only.orders) > 0 and allowed.orders.equals(long_only.orders)


# -- bad input, refused before any data is read ----------------------------------------------------------

D = ("--from", "2025-11-17", "--to", "2025-11-20", "--db", "postgresql://nobody@127.0.0.1:9/none")


@pytest.mark.parametrize(("args", "needles"), [
    (("--strategy", "nope", *D), ("unknown strategy 'nope'; known: ", "momentum_rotation")),
    (("--strategy", "momentum_rotation", "--params", '{"lookback": 1}', *D), ("invalid momentum_rotation params",
                                                                              "lookback")),
    (("--strategy", "momentum_rotation", "--params", '{"lookbak": 10}', *D), ("lookbak",)),
    (("--strategy", "momentum_rotation", "--params", "{lookback: 10", *D), ("--params is not JSON",)),
    (("--strategy", "momentum_rotation", "--params", "[1, 2]", *D), ("--params must be a JSON object",)),
    (("--strategy", "momentum_rotation", "--from", "2025-11-20", "--to", "2025-11-17"),
     ("--from 2025-11-20 is after --to 2025-11-17",)),
    (("--strategy", "momentum_rotation", "--from", "2025-11-22", "--to", "2025-11-23"),
     ("no NYSE session from 2025-11-22 to 2025-11-23",)),
    (("--strategy", "momentum_rotation", "--from", "2025-12-25", "--to", "2025-12-25"),
     ("no NYSE session from 2025-12-25 to 2025-12-25",)),
    (("--strategy", "momentum_rotation", "--from", "2025-11-31", "--to", "2025-12-01"), ("--from", "2025-11-31")),
    (("--strategy", "momentum_rotation", "--universe", "TQQQ,SQ QQ", *D), ("--universe: not a symbol: SQ QQ",)),
    (("--strategy", "momentum_rotation", "--universe", "TQQQ,tqqq", *D), ("--universe names TQQQ more than once",)),
    (("--strategy", "momentum_rotation", "--cost-bps", "-1", *D), ("--cost-bps must be a number >= 0",)),
    (("--strategy", "momentum_rotation", "--warmup-sessions", "61", *D), ("--warmup-sessions must be in 0..60",)),
    (("--from", "2025-11-17", "--to", "2025-11-20"), ("the following arguments are required: --strategy",)),
    (("--strategy", "momentum_rotation", "--allow-short=yes", *D),
     ("argument --allow-short: ignored explicit argument 'yes'",)),
    (("--strategy", "momentum_rotation", "--fractional=false", *D),
     ("argument --fractional: ignored explicit argument 'false'",)),
])
def test_bad_input_is_refused_with_one_line(args: tuple[str, ...], needles: tuple[str, ...], tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    html = tmp_path / "report.html"
    refused(capsys, *args, "--html", str(html), needles=needles)
    assert list(tmp_path.iterdir()) == []


def test_the_html_file_must_have_a_directory_and_is_overwritten_only_with_force(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    refused(capsys, *BASE, *D, "--html", str(tmp_path / "no" / "such" / "r.html"),
            needles=("directory", "no/such", "does not exist"))
    refused(capsys, *BASE, *D, "--html", str(tmp_path), needles=("is a directory",))
    kept = tmp_path / "kept.html"
    kept.write_text("mine")
    refused(capsys, *BASE, *D, "--html", str(kept), needles=(f"--html {kept} exists: pass --force",))
    assert kept.read_text() == "mine"
    assert not (tmp_path / "no").exists()


# -- over the simulator's market --------------------------------------------------------------------------


def test_the_simulator_refuses_symbols_it_does_not_know(capsys: pytest.CaptureFixture[str]) -> None:
    refused(capsys, "--strategy", "momentum_rotation", "--sim", "--universe", "TQQQ,ZZZZ", "--from", "2025-11-20",
            "--to", "2025-11-20", needles=("unknown symbol(s): the simulator does not know or cannot trade: ZZZZ",))


def test_the_command_backtests_the_simulators_market(tmp_path: Path) -> None:
    """As a user runs it on a fresh machine: ``openbell backtest --sim``, the page overwritten with --force; the
    strategy a plug-in from a package of its own (on PYTHONPATH), with no vectorized twin."""
    html = tmp_path / "sim.html"
    html.write_text("an older report")
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBELL_DATABASE_URL", "OPENBELL_HOME")}
    env["OPENBELL_HOME"] = str(tmp_path / "home")  # no database anywhere: --sim needs none
    env["PYTHONPATH"] = str(Path(__file__).parent / "strategies")
    out = subprocess.run(
        [sys.executable, "-m", "openbell.cli", "backtest", "--strategy", "ob_example.laggards:LeadersAndLaggards",
         "--params", '{"lookback": 10}', "--from", "2025-11-18",
         "--to", "2025-11-20", "--warmup-sessions", "1", "--sim", "--html", str(html), "--force"],
        env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    for label in FIGURES:
        assert label in out.stdout, label
    assert "3 session(s) after 1 warm-up, bars from the simulator" in out.stdout
    assert "targets: on_minute replayed" in out.stdout, out.stdout
    assert "simulator on http://127.0.0.1:" in out.stderr
    for i, day in enumerate(("2025-11-17", "2025-11-18", "2025-11-19", "2025-11-20"), 1):
        assert f"fetched {day} ({i}/4)" in out.stderr, out.stderr
    assert "traded 2025-11-20 (3/3)" in out.stderr
    text = html.read_text()
    assert text.startswith("<!DOCTYPE html>") and "Plotly.newPlot" in text
    assert not (tmp_path / "home" / "pg").exists()


def test_the_openbell_command_lists_backtest_and_refuses_with_exit_code_2(tmp_path: Path) -> None:
    listed = subprocess.run([sys.executable, "-m", "openbell.cli", "--help"], capture_output=True, text=True,
                            timeout=60)
    assert "backtest" in listed.stdout
    out = subprocess.run([sys.executable, "-m", "openbell.cli", "backtest", "--strategy", "nope", "--from",
                          "2025-11-17", "--to", "2025-11-20", "--sim"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and out.stdout == ""
    [line] = out.stderr.strip().splitlines()
    assert line.startswith("openbell backtest: unknown strategy 'nope'; known: " + ", ".join(_known())), line


def _known() -> list[str]:
    from openbell.strategy import names

    return names()


def test_sessions_listed_in_a_message_are_capped() -> None:
    from openbell.runtime.backtest_data import LISTED, _listed

    items = [str(date(2025, 1, 1) + timedelta(days=i)) for i in range(LISTED + 3)]
    assert _listed(items).endswith("and 3 more") and _listed(items[:2]) == ", ".join(items[:2])
