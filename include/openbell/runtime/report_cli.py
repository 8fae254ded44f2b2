"""``openbell report``: one session's report (text or ``--json``), and with ``--html FILE`` the day's page
against its replay (:mod:`openbell.dayreport`); ``--from D1 --to D2`` covers several sessions, a row each.

Bad input is refused before anything is read or written, with one line on stderr and exit code 2: a date
that is not an NYSE session, ``--date`` with ``--from``/``--to``, ``--from`` after ``--to``, an ``--html``
file whose directory does not exist or that exists without ``--force``; so is a session with nothing
recorded. A day whose strategy no longer resolves still gets its page, saying why the replay is missing.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from openbell import calendar
from openbell.dberrors import DatabaseUnavailable, redact
from openbell.jsonutil import json_default
from openbell.report import render
from openbell.runtime.command_kit import Parser, output_path, refused, write_whole
from openbell.runtime.report_source import (
    NothingRecorded,
    ReportError,
    how_to_record,
    load_report,
    state_engine,
    state_url_for,
)

if TYPE_CHECKING:
    from openbell.dayreport.summary import DayResult

PROG = "openbell report"


def _parser() -> argparse.ArgumentParser:
    p = Parser(prog=PROG, description="Print one session's report; --html also writes the day's page against its"
                                      " replay. --from/--to report several sessions, a row each.",
               epilog="Without --url and OPENBELL_DATABASE_URL, a rehearsed day is read from its database "
                      "openbell_YYYYMMDD on the embedded Postgres, any other day from openbell.")
    add = p.add_argument
    add("--date", type=date.fromisoformat, metavar="D", help="session date, YYYY-MM-DD")
    add("--from", dest="start", type=date.fromisoformat, metavar="D1", help="first session of a range, YYYY-MM-DD")
    add("--to", dest="end", type=date.fromisoformat, metavar="D2", help="last session of a range, YYYY-MM-DD")
    add("--json", action="store_true", help="print JSON instead of text")
    add("--url", help="state database URL (default: OPENBELL_DATABASE_URL or the embedded one)")
    add("--account", metavar="NAME", help="an account of the accounts file (default: the default account)")
    add("--html", type=Path, metavar="FILE", help="also write the page (live against the replay) to FILE")
    add("--force", action="store_true", help="overwrite the --html file if it exists")
    return p


@dataclass(frozen=True)
class Plan:
    """A checked request: the sessions (one with ``--date``), whether it is a range, the page's path."""

    sessions: list[date]
    is_range: bool
    html: Path | None
    force: bool


def plan(args: argparse.Namespace) -> Plan:
    """Every input checked before anything is read; :class:`ReportError` names the first refused."""
    ranged = args.start is not None or args.end is not None
    if args.date is not None and ranged:
        raise ReportError("--date reports one session, --from D1 --to D2 several: give one or the other")
    if args.date is None and not (args.start and args.end):
        raise ReportError("give --date D, or --from D1 and --to D2")
    try:
        if args.date is not None:
            if calendar.session(args.date) is None:
                raise ReportError(f"{args.date} is not an NYSE session (a weekend or a market holiday)")
            days = [args.date]
        else:
            if args.start > args.end:
                raise ReportError(f"--from {args.start} is after --to {args.end}")
            days = [s.date for s in calendar.sessions_between(args.start, args.end)]
            if not days:
                raise ReportError(f"no NYSE session from {args.start} to {args.end} (weekends and holidays only)")
    except calendar.CalendarRangeError as exc:
        raise ReportError(str(exc)) from None
    return Plan(days, ranged, output_path(args.html, args.force, ReportError), args.force)


def _url(args: argparse.Namespace, d: date) -> str:
    from openbell.paths import home_dir

    url = str(args.url or state_url_for(d, home_dir()))
    return url if args.account is None else account_url(url, args.account)


def account_url(url: str, account: str) -> str:
    """``url`` reaching ``account``'s state; :class:`ReportError` for a name that is not an account's or an
    account with no state in that database (never the default account's state in its place)."""
    from openbell.store.db import account_names
    from openbell.store.scope import scoped_url

    try:
        scoped = scoped_url(url, account)
    except ValueError as exc:
        raise ReportError(f"--account: {exc}") from None
    known = account_names(url)
    if account not in known:
        raise ReportError(f"--account {account}: no state of that account in {redact(url)} (accounts there: "
                          f"{', '.join(known) or 'none'})")
    return scoped


def day_result(url: str, d: date) -> DayResult:
    """The day against its replay, from ``url``."""
    from openbell.dayreport.summary import day_result as compare_day

    with state_engine(url) as engine:
        return compare_day(engine, d)


def write_page(path: Path, force: bool, page: str) -> int:
    """Write ``page`` to ``path`` (whole, or not at all); its size in bytes."""
    return write_whole(path, page.encode(), force, ReportError)


def _footer() -> str:
    return f"openbell report, {time.strftime('%Y-%m-%d %H:%M %Z')}"


def one_day(args: argparse.Namespace, p: Plan) -> list[str]:
    """The report of ``--date`` (and its page); the lines printed."""
    d = p.sessions[0]
    url = _url(args, d)
    report = load_report(url, d)
    lines = [json.dumps(report, default=json_default, indent=2) if args.json else render(report)]
    if p.html is not None:
        from openbell.dayreport.page import day_page
        from openbell.dayreport.summary import day_lines

        result = day_result(url, d)
        size = write_page(p.html, p.force, day_page(result, footer=_footer()))
        wrote = f"wrote {p.html} ({size / 1e6:.1f} MB)"
        if args.json:
            print(wrote, file=sys.stderr)
        else:
            lines += ["", *day_lines(result), wrote]
    return lines


def several_days(args: argparse.Namespace, p: Plan) -> list[str]:
    """The rows of ``--from``..``--to`` (and their page); the lines printed."""
    from openbell.dayreport.page import range_page
    from openbell.dayreport.summary import range_lines, totals

    results, absent = [], []
    for d in p.sessions:
        try:
            url = _url(args, d)
            load_report(url, d)
        except NothingRecorded:
            absent.append(d)
            continue
        results.append(day_result(url, d))
    start, end = p.sessions[0], p.sessions[-1]
    if not results:
        raise ReportError(f"nothing recorded for any session from {start} to {end}: {how_to_record('D')} (each"
                          " session of the range)")
    if args.json:
        out: dict[str, Any] = {"from": start.isoformat(), "to": end.isoformat(), "days": [r.row() for r in results],
                               "total": totals(results), "nothing_recorded": [d.isoformat() for d in absent]}
        lines = [json.dumps(out, default=json_default, indent=2)]
    else:
        lines = range_lines(results, start, end, absent)
    if p.html is not None:
        size = write_page(p.html, p.force, range_page(results, start, end, absent, footer=_footer()))
        wrote = f"wrote {p.html} ({size / 1e6:.1f} MB)"
        if args.json:
            print(wrote, file=sys.stderr)
        else:
            lines.append(wrote)
    return lines


def main(argv: list[str] | None = None) -> int:
    """``openbell report --date D | --from D1 --to D2 [--json] [--url URL] [--html FILE [--force]]``; exit 2 with
    one line on stderr when it cannot."""
    from openbell.pg.server import EmbeddedPostgresError

    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        p = plan(args)
        lines = several_days(args, p) if p.is_range else one_day(args, p)
    except (ReportError, DatabaseUnavailable, EmbeddedPostgresError) as exc:
        return refused(PROG, exc)
    print("\n".join(lines))
    return 0
