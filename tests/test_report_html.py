"""``openbell report --html`` and ``--from/--to``: the day's page against its replay, several days' rows, and
every bad input refused with one line and exit code 2, nothing written."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
from sqlalchemy import Engine

sys.path.insert(0, str(Path(__file__).resolve().parent / "dayreport"))  # day_fixture, day_strategies

from day_fixture import DAY, LIVE_PNL, seed_day

from openbell.runtime.report_cli import main

NEXT = "2025-11-21"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    try:
        code = main(list(args))
    except SystemExit as exc:  # the option parser's own refusals
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def refused(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    code, out, err = run(capsys, *args)
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and out == "", (out, err)
    return lines[0]


def test_a_day_and_its_page(engine: Engine, state_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    seed_day(engine)
    page = tmp_path / "day.html"
    code, out, err = run(capsys, "--date", str(DAY), "--url", state_url, "--html", str(page))
    assert code == 0, err
    assert out.startswith("openbell report for session 2025-11-20")  # the text report, as without --html
    assert "live against the replay (day_strategies:StepIn; parameter versions: v1 from 09:30 ET" in out
    assert "live P&L +74.10, replay P&L +274.00, difference -199.90" in out
    assert f"wrote {page} (" in out
    text = page.read_text()
    assert text.startswith("<!DOCTYPE html>") and not re.search(r"<script[^>]*\bsrc\s*=", text, re.I)
    assert "openbell day report: 2025-11-20" in text and not list(tmp_path.glob(".*.tmp"))


def test_the_json_report_is_unchanged_by_the_page(engine: Engine, state_url: str, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    seed_day(engine)
    _, plain, _ = run(capsys, "--date", str(DAY), "--url", state_url, "--json")
    code, out, err = run(capsys, "--date", str(DAY), "--url", state_url, "--json", "--html", str(tmp_path / "d.html"))
    assert code == 0 and json.loads(out) == json.loads(plain)
    assert err.startswith(f"wrote {tmp_path / 'd.html'}")


def test_an_existing_page_is_kept_without_force(engine: Engine, state_url: str, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    seed_day(engine)
    page = tmp_path / "day.html"
    page.write_text("mine")
    line = refused(capsys, "--date", str(DAY), "--url", state_url, "--html", str(page))
    assert line == f"openbell report: --html {page} exists: pass --force to overwrite it"
    assert page.read_text() == "mine"
    code, _, err = run(capsys, "--date", str(DAY), "--url", state_url, "--html", str(page), "--force")
    assert code == 0, err
    assert page.read_text().startswith("<!DOCTYPE html>")


def test_a_strategy_that_no_longer_resolves_still_gets_its_page(engine: Engine, state_url: str, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    seed_day(engine, strategy="gone_package.strategies:Gone")
    page = tmp_path / "day.html"
    code, out, err = run(capsys, "--date", str(DAY), "--url", state_url, "--html", str(page))
    assert code == 0, err
    assert "  no replay: the strategy 'gone_package.strategies:Gone' cannot be resolved any more" in out
    assert "live P&L +74.10, replay P&L n/a, difference n/a" in out
    assert "No replay of this day: the strategy" in page.read_text()


def test_bad_input_is_refused_with_one_line_and_nothing_written(engine: Engine, state_url: str, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    seed_day(engine)
    page = tmp_path / "day.html"
    html = ("--url", state_url, "--html", str(page))
    cases = [
        (("--date", "2025-11-22", *html), "2025-11-22 is not an NYSE session"),  # a Saturday
        (("--date", "2025-11-27", *html), "2025-11-27 is not an NYSE session"),  # Thanksgiving
        (("--date", NEXT, *html), f"nothing recorded for session {NEXT}"),
        (("--from", NEXT, "--to", str(DAY), *html), f"--from {NEXT} is after --to {DAY}"),
        (("--date", str(DAY), "--from", str(DAY), "--to", NEXT, *html), "--date reports one session"),
        (("--from", str(DAY), *html), "give --date D, or --from D1 and --to D2"),
        (("--from", "2025-11-22", "--to", "2025-11-23", *html), "no NYSE session from 2025-11-22 to 2025-11-23"),
        (("--date", str(DAY), "--url", state_url, "--html", str(tmp_path / "nowhere" / "d.html")),
         f"directory {tmp_path / 'nowhere'} does not exist"),
        (("--date", str(DAY), "--url", state_url, "--html", str(tmp_path)), "is a directory"),
        (("--date", "20-11-2025", *html), "argument --date: invalid"),
    ]
    for args, needle in cases:
        line = refused(capsys, *args)
        assert line.startswith("openbell report: ") and needle in line, (args, line)
    assert list(tmp_path.iterdir()) == []


def test_a_day_with_nothing_recorded_says_how_to_get_one(engine: Engine, state_url: str,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    seed_day(engine)
    line = refused(capsys, "--date", NEXT, "--url", state_url)
    for needle in ("sessions there: 2025-11-20", f"openbell demo --date {NEXT}", "make demo", "trading_day DAG",
                   "--url"):
        assert needle in line, line
    line = refused(capsys, "--from", "2025-11-24", "--to", "2025-11-26", "--url", state_url)
    assert "nothing recorded for any session from 2025-11-24 to 2025-11-26" in line and "make demo" in line


def test_several_days_a_row_each(engine: Engine, state_url: str, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    seed_day(engine)
    seed_day(engine, NEXT_DAY := DAY.replace(day=21))
    span = ("--from", "2025-11-19", "--to", "2025-11-24", "--url", state_url)
    code, out, err = run(capsys, *span)
    assert code == 0, err
    rows = [line.split() for line in out.splitlines() if line[:4] in ("2025", "tota")]
    assert rows == [["2025-11-20", "+74.10", "+274.00", "-199.90", "2", "3", "4"],
                    ["2025-11-21", "+74.10", "+274.00", "-199.90", "2", "3", "4"],
                    ["total", "+148.20", "+548.00", "-399.80", "4", "6", "8"]]
    assert out.splitlines()[-1] == "nothing recorded: 2025-11-19, 2025-11-24"
    code, out, err = run(capsys, *span, "--json", "--html", str(tmp_path / "days.html"))
    assert code == 0, err
    got = json.loads(out)
    assert [d["date"] for d in got["days"]] == ["2025-11-20", str(NEXT_DAY)]
    assert got["total"]["live_pnl"] == pytest.approx(2 * LIVE_PNL)
    assert got["days"][0]["attribution"]["refused"] == -84.0
    assert got["nothing_recorded"] == ["2025-11-19", "2025-11-24"]
    text = (tmp_path / "days.html").read_text()
    assert "openbell report: 2025-11-19 to 2025-11-24" in text and 'id="days-chart"' in text
