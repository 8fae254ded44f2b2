"""``openbell sim``: run the Alpaca-compatible market and broker simulator."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import logging
import math
import os
import re
import sys
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import TypeVar

from openbell.cpu import background
from openbell.sim.accounts import ACCOUNTS_ENV, accounts_from_env, check_unique, parse_account
from openbell.sim.faults import LIMITS, Faults, parse_silence
from openbell.sim.halts import parse_halt
from openbell.sim.playback import default_session_date, is_session, parse_hhmm
from openbell.sim.ratelimit import DEFAULT_LIMIT
from openbell.sim.server import serve
from openbell.sim.simulator import DEFAULT_CORRECTIONS, SimConfig, Simulator
from openbell.sim.splits import parse_split
from openbell.sim.symbols import parse_symbol

DEMO_KEY = "openbell-demo-key"
DEMO_SECRET = "openbell-demo-secret"
MAX_SPEED = 1_000_000.0
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_HOSTNAME = re.compile(r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                       r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*")


def _date(text: str) -> date:
    try:
        d = date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected YYYY-MM-DD, got {text!r}") from None
    if not is_session(d):
        raise argparse.ArgumentTypeError(f"{text} is not an NYSE session (weekend or holiday)")
    return d


def _hhmm(text: str) -> str:
    try:
        h, m, s = parse_hhmm(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return f"{h:02d}:{m:02d}" + (f":{s:02d}" if s else "")


T = TypeVar("T")


def _parsed(parse: Callable[[str], T]) -> Callable[[str], T]:
    """An argparse type from a parser that raises ValueError: its message becomes the one-line error."""

    def convert(text: str) -> T:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = parse.__name__
    return convert


_silence = _parsed(parse_silence)
_halt = _parsed(parse_halt)
_split = _parsed(parse_split)
_symbol = _parsed(parse_symbol)
_account = _parsed(parse_account)


def _finite(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        v = math.nan
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return v


def _number(lo: float, hi: float = math.inf, *, above: bool = False) -> Callable[[str], float]:
    """A parser of finite numbers from ``lo`` (excluded when ``above``) to ``hi``."""
    def parse(text: str) -> float:
        v = _finite(text)
        if v < lo or (above and v == lo) or v > hi:
            bound = f"> {lo:g}" if above else f">= {lo:g}"
            raise argparse.ArgumentTypeError(
                f"expected a number {bound}" + (f" and <= {hi:g}" if hi < math.inf else "") + f", got {text!r}")
        return v
    return parse


def _integer(lo: int, hi: int) -> Callable[[str], int]:
    """A parser of integers from ``lo`` to ``hi``."""
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            v = lo - 1
        if not lo <= v <= hi:
            raise argparse.ArgumentTypeError(f"expected an integer from {lo} to {hi}, got {text!r}")
        return v
    return parse


def _position(text: str) -> tuple[str, float]:
    sym, _, qty = text.partition(":")
    try:
        symbol, q = parse_symbol(sym), float(qty)
    except ValueError:
        symbol, q = "", 0.0
    if q == 0 or not math.isfinite(q):
        raise argparse.ArgumentTypeError(f"expected SYMBOL:QTY with a finite, non-zero QTY, got {text!r}")
    return symbol, q


def _host(text: str) -> str:
    with contextlib.suppress(ValueError):
        return str(ipaddress.ip_address(text))
    if not _HOSTNAME.fullmatch(text):
        raise argparse.ArgumentTypeError(f"expected an IP address or a host name, got {text!r}")
    return text


def _credential(text: str) -> str:
    if not text or not text.isascii() or not text.isprintable() or any(c.isspace() for c in text):
        raise argparse.ArgumentTypeError("expected a non-empty value of printable ASCII without spaces")
    return text


def _data_dir(text: str) -> Path:
    path = Path(text)
    if not text or (path.exists() and not path.is_dir()):
        raise argparse.ArgumentTypeError(f"expected a directory path, got {text!r}")
    return path


def _csv_dir(text: str) -> Path:
    path = Path(text)
    if not text or not path.is_dir():
        raise argparse.ArgumentTypeError(f"not a directory: {text!r}")
    files = sorted(path.glob("*.csv"))
    if not files:
        raise argparse.ArgumentTypeError(f"no *.csv files in {text!r}")
    for f in files:
        try:
            parse_symbol(f.stem)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{f.name!r} in {text!r}: the file name must be SYMBOL.csv") from None
    return path


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="openbell sim",
        description="An Alpaca-compatible market and broker simulator on one port: trading REST /v2/..., "
        "market data /v2/stocks/..., market-data streams /v2/iex and /v2/sip, trade updates /stream, and "
        "/sim/clock, /sim/faults, /sim/health. It plays one NYSE session at SPEED market seconds per wall "
        "second and keeps running past the close.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    g = p.add_argument_group("market time")
    g.add_argument("--date", type=_date, default=None,
                   help="NYSE session to play, YYYY-MM-DD (default: the latest session before today)")
    g.add_argument("--speed", type=_number(0, MAX_SPEED, above=True), default=60.0,
                   help="market seconds per wall-clock second")
    g.add_argument("--start", type=_hhmm, default="09:25", help="market time (ET, HH:MM[:SS]) to start at")
    g.add_argument("--reset-clock", action="store_true",
                   help="start the clock afresh even if the data dir holds a running clock for the same "
                        "date, speed and start (by default a restart resumes the clock as if never stopped)")
    g = p.add_argument_group("server")
    g.add_argument("--host", type=_host, default="127.0.0.1", help="address to listen on")
    g.add_argument("--port", type=_integer(1, 65535), default=5055, help="port to listen on")
    g.add_argument("--data-dir", type=_data_dir, default=Path(".openbell/sim"),
                   help="directory of the broker's persistent state (account, orders, positions, clock)")
    g.add_argument("--api-key", type=_credential, default=None,
                   help=f"API key id clients must send (default: $APCA_API_KEY_ID, else {DEMO_KEY!r})")
    g.add_argument("--secret-key", type=_credential, default=None,
                   help="API secret clients must send (default: $APCA_API_SECRET_KEY, else a fixed demo "
                        "secret that is printed at start)")
    g.add_argument("--account", dest="accounts", type=_account, action="append", default=[],
                   metavar="NAME:KEY:SECRET",
                   help=f"serve an account of its own for this key (repeatable, or one per line in ${ACCOUNTS_ENV}, "
                        "which keeps the secrets off the command line; replaces --api-key): its own cash, "
                        "positions, orders, fills, request budget and trade updates, stored under "
                        "DATA_DIR/accounts/NAME; --cash, --seed-position and the other broker flags apply to "
                        "each; market data is shared")
    g.add_argument("--max-stream-connections", type=_integer(1, 1000), default=1,
                   help="market-data stream connections allowed per key (Alpaca allows 1)")
    g = p.add_argument_group("market data")
    g.add_argument("--seed", type=_integer(0, 2**32 - 1), default=0, help="seed of the synthetic market")
    g.add_argument("--csv-dir", type=_csv_dir, default=None,
                   help="directory of SYMBOL.csv files with minute bars "
                        "(timestamp,open,high,low,close,volume[,trade_count,vwap]; naive timestamps are UTC, "
                        "each the bar's start); these symbols are served from the CSV only")
    g.add_argument("--symbol", dest="symbols", type=_symbol, action="append", default=[], metavar="SYM",
                   help="add a synthetic symbol to the default universe (repeatable)")
    density = g.add_mutually_exclusive_group()
    density.add_argument("--sparse", dest="sparse", action="store_true", default=True,
                         help="IEX-like bars (the default): on the IEX feed (stream /v2/iex, REST feed=iex) a symbol "
                              "gets no bar in a minute without an IEX trade, stream and REST alike; the thinnest "
                              "names (the inverse leveraged ETFs ERY, FAZ, SDS, TZA, SQQQ) miss 5-40%% of minutes by "
                              "name, the rest less; SIP stays dense; deterministic per --seed")
    density.add_argument("--dense", dest="sparse", action="store_false", default=argparse.SUPPRESS,
                         help="a bar for every symbol in every minute on every feed (a kinder market than Alpaca's)")
    g.add_argument("--corrections", type=_number(0, 1), default=DEFAULT_CORRECTIONS, metavar="F",
                   help="re-send this share of bars on updatedBars ('T': 'u') 30 market seconds after the bar, "
                        "changed by a late trade; REST serves the corrected bar from then on; deterministic per "
                        "--seed (Alpaca corrects a small share)")
    g.add_argument("--halt", dest="halts", type=_halt, action="append", default=[], metavar="SYM:HH:MM-HH:MM",
                   help="halt SYM on the played session from HH:MM to HH:MM ET, or to 'close' (repeatable): "
                        "statuses subscribers get 'T': 's' messages with the codes of SYM's tape, as Alpaca "
                        "sends them (NYSE Arca, Cboe, NYSE listed: sc 2 at the halt, 3 at the resumption, rc M "
                        "for a LULD pause of up to 15 minutes, P beyond; Nasdaq listed: sc P and rc LUDP for a "
                        "pause, H and T1 beyond, T at the resumption), no bar exists while halted (stream "
                        "and REST), orders are held until the resumption and day orders expire at the close; a "
                        "halt to the close resumes at the next session's open")
    g.add_argument("--split", dest="splits", type=_split, action="append", default=[], metavar="SYM:RATIO:DATE",
                   help="a split of RATIO new shares per old share (0.1 = a 1-for-10 reverse split) effective at "
                        "the open of session DATE (repeatable): raw bars show the jump, REST bars with "
                        "adjustment=split or all do not (dividend and spin-off are raw), positions held across "
                        "it are adjusted at that open (qty*RATIO, average price/RATIO, working orders canceled)")
    g = p.add_argument_group("broker")
    g.add_argument("--cash", type=_number(0), default=100_000.0, help="starting cash of a new account")
    g.add_argument("--slippage-bps", type=_number(0, 10_000), default=0.0,
                   help="market orders fill this many basis points worse than the current price")
    g.add_argument("--seed-position", type=_position, action="append", default=[], metavar="SYM:QTY",
                   help="hold a position at start (repeatable; negative QTY = short, fractions allowed; a symbol "
                        "outside the universe becomes a synthetic stock); only for a new account")
    g.add_argument("--rate-limit", type=_integer(1, 1_000_000), default=DEFAULT_LIMIT, metavar="N",
                   help="Trading API requests per minute (market time) per key, as Alpaca limits them: past N, 429 "
                        "until the minute's window ends; every Trading API answer carries X-RateLimit-Limit, "
                        "X-RateLimit-Remaining and X-RateLimit-Reset; market data and /sim are not limited")
    g.add_argument("--trading-blocked", action="store_true",
                   help="the account may not trade: every order is refused with 403 'account is not authorized "
                        "to trade' and the account shows trading_blocked")
    g.add_argument("--not-tradable", dest="not_tradable", type=_symbol, action="append", default=[],
                   metavar="SYM", help="the asset is not tradable: every order in it is refused (422; repeatable)")
    g.add_argument("--not-fractionable", dest="not_fractionable", type=_symbol, action="append", default=[],
                   metavar="SYM", help="the asset is not fractionable: a fractional or notional order that opens or "
                   "adds to a position is refused with 422 'requested asset is not fractionable' (repeatable)")
    g.add_argument("--not-shortable", dest="not_shortable", type=_symbol, action="append", default=[],
                   metavar="SYM", help="the asset is not shortable (nor easy to borrow): a sell that opens or adds "
                   "to a short is refused with 422 'asset SYM cannot be sold short' (repeatable)")
    g.add_argument("--hard-to-borrow", dest="hard_to_borrow", type=_symbol, action="append", default=[],
                   metavar="SYM", help="the asset is shortable but not easy to borrow: a sell that opens or adds to "
                   "a short is refused with 422 'asset SYM cannot be sold short' (repeatable)")
    g = p.add_argument_group("faults (also settable at runtime: POST /sim/faults, a JSON body sent with the API key)")
    g.add_argument("--drop-streams-at", type=_hhmm, action="append", default=[], metavar="HH:MM",
                   help="close every stream connection at this market time (repeatable)")
    g.add_argument("--silence-at", type=_silence, action="append", default=[], metavar="HH:MM:MINUTES",
                   help="keep streams connected but send no bars for MINUTES market minutes (repeatable)")
    g.add_argument("--refuse-reconnect-seconds", type=_number(0, LIMITS["refuse_reconnect_seconds"]), default=0.0,
                   metavar="N",
                   help="after a drop, answer the same key's stream reconnects with 406 for N wall seconds")
    g.add_argument("--rest-error-rate", type=_number(0, LIMITS["rest_error_rate"]), default=0.0, metavar="F",
                   help="answer this fraction of /v2 REST calls with 429 or 500 (half each)")
    g.add_argument("--rest-delay-ms", type=_number(0, LIMITS["rest_delay_ms"]), default=0.0, metavar="N",
                   help="delay every /v2 REST answer by N milliseconds")
    g.add_argument("--reject-symbol", dest="reject_symbols", type=_symbol, action="append", default=[], metavar="SYM",
                   help="orders in this symbol are accepted, then rejected by the exchange (repeatable)")
    g.add_argument("--partial-fills", action="store_true",
                   help="fill orders of 2+ shares in two executions (partial_fill, then fill)")
    g.add_argument("--no-sip", action="store_true",
                   help="the key has no SIP subscription: /v2/sip answers 409 insufficient subscription")
    g.add_argument("--background", action="store_true",
                   help="run on SCHED_BATCH (Linux): yield the CPU to the trading processes sharing the machine, as "
                        "a remote broker would")
    g.add_argument("--log-level", type=str.upper, choices=LOG_LEVELS, default="INFO", help="logging level")
    return p


def config_from_args(args: argparse.Namespace) -> tuple[SimConfig, bool]:
    """The simulator config, and whether demo credentials are in use."""
    key = args.api_key or os.environ.get("APCA_API_KEY_ID") or DEMO_KEY
    secret = args.secret_key or os.environ.get("APCA_API_SECRET_KEY") or DEMO_SECRET
    faults = Faults(
        drop_streams_at=[t[:5] for t in args.drop_streams_at],
        silence_at=list(args.silence_at),
        refuse_reconnect_seconds=args.refuse_reconnect_seconds,
        rest_error_rate=args.rest_error_rate,
        rest_delay_ms=args.rest_delay_ms,
        reject_symbols=list(args.reject_symbols),
        partial_fills=args.partial_fills,
        sip_allowed=not args.no_sip,
    )
    cfg = SimConfig(
        session_date=args.date or default_session_date(),
        data_dir=args.data_dir,
        api_key=key,
        secret_key=secret,
        speed=args.speed,
        start=args.start,
        host=args.host,
        port=args.port,
        seed=args.seed,
        slippage_bps=args.slippage_bps,
        cash=args.cash,
        seed_positions=list(args.seed_position),
        csv_dir=args.csv_dir,
        symbols=list(args.symbols),
        max_stream_connections=args.max_stream_connections,
        reset_clock=args.reset_clock,
        faults=faults,
        sparse=args.sparse,
        corrections=args.corrections,
        halts=list(args.halts),
        splits=list(args.splits),
        rate_limit=args.rate_limit,
        trading_blocked=args.trading_blocked,
        not_tradable=list(args.not_tradable),
        not_fractionable=list(args.not_fractionable),
        not_shortable=list(args.not_shortable),
        hard_to_borrow=list(args.hard_to_borrow),
        accounts=list(args.accounts),
    )
    return cfg, not args.accounts and key == DEMO_KEY and secret == DEMO_SECRET


def check_args(args: argparse.Namespace) -> str | None:
    """Why these flags cannot go together, if they cannot; without ``--account``, the accounts of
    :data:`~openbell.sim.accounts.ACCOUNTS_ENV` are taken."""
    if not args.accounts and os.environ.get(ACCOUNTS_ENV, "").strip():
        try:
            args.accounts = accounts_from_env(os.environ[ACCOUNTS_ENV])
        except ValueError as exc:
            return f"${ACCOUNTS_ENV}: {exc}"
    if args.accounts and (args.api_key or args.secret_key):
        return "argument --account: not allowed with --api-key or --secret-key (each account has its key)"
    try:
        check_unique(args.accounts)
    except ValueError as exc:
        return f"argument --account: {exc}"
    return None


def main(argv: list[str] | None = None) -> int:
    """Parse flags, start the simulator and serve until SIGTERM or Ctrl-C."""
    p = parser()
    args = p.parse_args(argv)
    problem = check_args(args)
    if problem:
        p.error(problem)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg, demo = config_from_args(args)
    try:
        sim = Simulator(cfg)
    except ValueError as exc:
        p.error(" ".join(str(exc).split()))
    if args.background and not background():
        print("openbell sim: --background: batch scheduling is not available here; running as usual", file=sys.stderr)
    base = f"http://{cfg.host}:{cfg.port}"
    print(f"openbell sim: session {cfg.session_date} from {cfg.start} ET at {cfg.speed:g}x on {base}", flush=True)
    if demo:
        print(f"openbell sim: demo credentials: key {DEMO_KEY} secret {DEMO_SECRET}", flush=True)
    if cfg.accounts:
        names = ", ".join(f"{a.name} (key {a.key})" for a in cfg.accounts)
        print(f"openbell sim: accounts {names}", flush=True)
    try:
        asyncio.run(serve(sim, cfg.host, cfg.port))
    except OSError as exc:
        print(f"openbell sim: cannot listen on {cfg.host}:{cfg.port}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
