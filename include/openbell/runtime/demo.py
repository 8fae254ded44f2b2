"""``openbell demo``: one simulated trading day through Airflow, from the bell to the report.

Starts Postgres (embedded unless URLs are given), Airflow's four processes and the simulator, lets the
scheduler create the session's run from the NYSE timetable, shows each task's state and the market
clock while it runs, and ends with the session's report. Exits non-zero unless every step succeeded
(or skipped itself with a reason) and the account is flat at the close. Interrupted at any moment
(Ctrl-C, SIGTERM, SIGHUP), it stops every process it started before it exits.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import signal
import sys
import time
from collections.abc import Mapping
from datetime import UTC, date, datetime
from types import FrameType

from openbell import calendar
from openbell.accounts import day_dag_id
from openbell.params import RUN_DEFAULTS_ENV, run_defaults
from openbell.paths import home_dir
from openbell.report import render
from openbell.runtime.redis_server import RedisUnavailable, redis_binary
from openbell.runtime.rehearsal import STOP_SIGNALS, DayResult, Rehearsal, rehearse

log = logging.getLogger(__name__)


def latest_session() -> date:
    """The latest completed NYSE session."""
    return calendar.last_completed_session(datetime.now(UTC)).date


def _interrupt(signum: int, frame: FrameType | None) -> None:
    """SIGTERM and SIGHUP take Ctrl-C's way out: the same cleanup."""
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _block(day: Rehearsal) -> None:
    """Leave Airflow's UI up until Ctrl-C."""
    print(f"\nAirflow UI: {day.stack.api_url}  login: admin / {day.stack.admin_password}  (Ctrl-C to stop)")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass


def strategy_defaults(strategy: str | None, params: str | None, environ: Mapping[str, str] = os.environ) -> str:
    """The deployment's run parameters (JSON for :data:`~openbell.params.RUN_DEFAULTS_ENV`) of a demo that
    names a strategy and its parameters: the environment's own, with these on top, checked as a run's are
    (the strategy resolved, its parameters against its schema). ``""`` when neither is given; InvalidRunParams
    (or ValueError for JSON that is not an object) naming what is wrong."""
    if strategy is None and params is None:
        return ""
    own = environ.get(RUN_DEFAULTS_ENV, "").strip()
    values = run_defaults(environ).model_dump(mode="json", exclude_unset=True) if own else {}
    if strategy is not None:
        values["strategy"] = strategy
    if params is not None:
        try:
            values["strategy_params"] = json.loads(params)
        except ValueError as exc:
            raise ValueError(f"--strategy-params is not JSON: {exc}") from None
        if not isinstance(values["strategy_params"], dict):
            raise ValueError(f"--strategy-params must be a JSON object, got {params[:80]!r}")
    raw = json.dumps(values)
    run_defaults({RUN_DEFAULTS_ENV: raw})  # refused here, before anything starts, as the DAG file would be
    return raw


MAX_ACCOUNTS = 8
EARLIEST_START = "04:00"  # the simulator's day starts no earlier than Alpaca's pre-market


def start_error(session_date: date, start: str) -> str | None:
    """Why ``start`` (``HH:MM``, ET) cannot start a rehearsal of ``session_date``, or None: a malformed time,
    one before :data:`EARLIEST_START`, or one at or after the session's close (13:00 on a half day)."""
    from openbell.sim.playback import market_instant

    s = calendar.session(session_date)
    if s is None:
        return f"{session_date} is not an NYSE session"
    if not re.fullmatch(r"\d{2}:\d{2}", start):
        return f"--start must be a time as HH:MM (ET), got {start!r}"
    try:
        at = market_instant(session_date, start)
    except ValueError as exc:
        return f"--start {start!r}: {exc}"
    close = s.close.astimezone(calendar.ET)
    if at >= close:
        return f"--start {start} is at or after the close of {session_date} ({close:%H:%M} ET): nothing to trade"
    if at < market_instant(session_date, EARLIEST_START):
        return f"--start {start} is before {EARLIEST_START} ET, when the simulated day begins"
    return None


def main(argv: list[str] | None = None) -> int:
    """``openbell demo [--date D] [--start HH:MM] [--speed S] [--sim-option ARG]... [--strategy S]
    [--strategy-params JSON] [--executor local|celery] [--accounts N] [--keep-running]``."""
    parser = argparse.ArgumentParser(prog="openbell demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--date", type=date.fromisoformat, help="session to simulate (default: the latest completed)")
    parser.add_argument("--start", default="09:25", metavar="HH:MM",
                        help="market time (ET) the simulator starts at, before the close (default 09:25)")
    parser.add_argument("--speed", type=float, default=120.0, help="market seconds per wall second (default 120)")
    parser.add_argument("--sim-option", action="append", default=[], metavar="ARG",
                        help="pass an argument to the simulator, e.g. --sim-option=--seed-position=AAPL:10")
    parser.add_argument("--strategy", help="the run's strategy: a registered name, module:Class (importable: on "
                        "PYTHONPATH) or an openbell.strategies entry point (default: the deployment's)")
    parser.add_argument("--strategy-params", metavar="JSON", help="the strategy's parameters, a JSON object")
    parser.add_argument("--executor", choices=("local", "celery"), default="local",
                        help="Airflow's executor: local (LocalExecutor, the default) or celery (CeleryExecutor with a "
                             "local Redis and two Celery workers, one for live_trading's queue)")
    parser.add_argument("--accounts", type=int, metavar="N",
                        help=f"rehearse N accounts' days at once (1 to {MAX_ACCOUNTS}), each with its own key on one "
                             "simulator, its own DAGs and its own state; default: the one default account")
    parser.add_argument("--keep-running", action="store_true", help="leave Airflow's UI up after the day")
    parser.add_argument("--json", action="store_true", help="print the final report as JSON")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    session_date = args.date or latest_session()
    if calendar.session(session_date) is None:
        parser.error(f"{session_date} is not an NYSE session")
    refused = start_error(session_date, args.start)
    if args.accounts is not None and not 1 <= args.accounts <= MAX_ACCOUNTS:
        refused = refused or f"--accounts must be from 1 to {MAX_ACCOUNTS}, got {args.accounts}"
    if args.executor == "celery":
        try:
            redis_binary()
        except RedisUnavailable as exc:
            refused = refused or str(exc)
    try:
        defaults = strategy_defaults(args.strategy, args.strategy_params)
    except ValueError as exc:  # InvalidRunParams too
        refused = refused or str(exc)
    if refused:
        print(f"openbell demo: {refused}", file=sys.stderr)
        return 2
    for sig in STOP_SIGNALS[1:]:
        signal.signal(sig, _interrupt)
    try:
        if args.accounts is not None:
            return _accounts_demo(args, session_date, defaults)
        result = rehearse(session_date, speed=args.speed, start=args.start, sim_args=args.sim_option, home=home_dir(),
                          keep_running=_block if args.keep_running else None, run_defaults=defaults,
                          executor=args.executor)
    except KeyboardInterrupt:
        print("\ninterrupted; every process the demo started is stopped", file=sys.stderr)
        return 130
    print()
    if args.json:
        from openbell.jsonutil import json_default

        print(json.dumps(result.report, default=json_default, indent=2))
    else:
        print(render(result.report))
    print(f"\nrun {result.run_id}: {result.run_state}; " + ("OK" if result.ok else "NOT OK"))
    return 0 if result.ok else 1


def _accounts_demo(args: argparse.Namespace, session_date: date, defaults: str) -> int:
    """N accounts' days at once: one report section per account, then a summary table."""
    from openbell.runtime.accounts_rehearsal import rehearse_accounts

    names = [f"acct{i}" for i in range(1, args.accounts + 1)]
    results = rehearse_accounts(session_date, names, home=home_dir(), speed=args.speed,
                                start=args.start, executor=args.executor, sim_args=args.sim_option,
                                run_defaults=defaults,
                                keep_running=(lambda days: _block(next(iter(days.values())))) if args.keep_running
                                else None)
    if args.json:
        from openbell.jsonutil import json_default

        print(json.dumps({n: r.report for n, r in results.items()}, default=json_default, indent=2))
    else:
        for name, result in results.items():
            print(f"\n=== account {name} ({day_dag_id(name)}) ===")
            print(render(result.report))
    print()
    print(summary_table(results))
    return 0 if all(r.ok for r in results.values()) else 1


def summary_table(results: Mapping[str, DayResult]) -> str:
    """One line per account: its run, P&L, orders filled, whether flat at the close, OK or not."""
    lines = [f"{'account':<10} {'run':<8} {'P&L':>10} {'orders':>7} {'filled':>7} {'flat':<5} result"]
    for name, r in results.items():
        change = r.report["pnl"].get("change")
        orders = r.report["orders"]
        filled = sum(1 for o in orders if o["status"] == "filled")
        lines.append(f"{name:<10} {r.run_state:<8} {'n/a' if change is None else f'{change:+.2f}':>10} "
                     f"{len(orders):>7} {filled:>7} {'yes' if r.report['flat_at_close'] else 'NO':<5} "
                     f"{'OK' if r.ok else 'NOT OK'}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
