"""The simulator's bar store: synthetic or CSV 1-minute bars per (symbol, session, feed), cached and
pre-serialized, with aggregation to larger timeframes and Alpaca's paging of ``GET /v2/stocks/bars``.

What it serves follows :class:`Rules`: raw prices show splits (:mod:`~openbell.sim.splits`), halted
minutes have no bar (:mod:`~openbell.sim.halts`), the IEX feed of a sparse market has no bar for a minute
without an IEX trade (:mod:`~openbell.sim.liquidity`) and corrected bars change 30 market seconds after
their bar (:mod:`~openbell.sim.corrections`). The broker trades on the dense raw market
(:meth:`BarStore.true_session`), which every exchange together makes."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import orjson
import pandas as pd

from openbell.calendar import ET
from openbell.sim.bars import FIELDS, Chunk, adjusted, aggregate, concat, scaled, serialize
from openbell.sim.corrections import VISIBLE_AFTER_NS, correct
from openbell.sim.csvbars import load_csv
from openbell.sim.errors import ApiError, bad_request
from openbell.sim.halts import HaltBook
from openbell.sim.liquidity import no_trade_minutes
from openbell.sim.market import NS_PER_MIN, UNIVERSE, SessionBars, spec_for, synthetic_session
from openbell.sim.playback import is_session, sessions_between, to_utc_ns
from openbell.sim.splits import SplitBook


@dataclass(frozen=True)
class SymbolInfo:
    symbol: str
    exchange: str
    name: str
    source: str  # "synthetic" or "csv"


@dataclass
class Rules:
    """How the served market differs from the dense synthetic one (see ``openbell sim --help``)."""

    sparse: bool = False
    corrections: float = 0.0
    halts: HaltBook = field(default_factory=lambda: HaltBook([], None))
    splits: SplitBook = field(default_factory=lambda: SplitBook([]))


@dataclass(frozen=True)
class TimeFrame:
    amount: int
    unit: str  # Min, Hour, Day, Week, Month

    def __str__(self) -> str:
        return f"{self.amount}{self.unit}"


_TF_RE = re.compile(r"^(\d+)(Min|T|Hour|H|Day|D|Week|W|Month|M)$")
_TF_UNITS = {"T": "Min", "H": "Hour", "D": "Day", "W": "Week", "M": "Month"}


def parse_timeframe(text: str) -> TimeFrame:
    """Alpaca's timeframe syntax: {1-59}Min, {1-23}Hour, 1Day, 1Week, {1,2,3,6,12}Month."""
    m = _TF_RE.match(text or "")
    if not m:
        raise bad_request(f"invalid timeframe: {text!r}")
    amount, unit = int(m.group(1)), _TF_UNITS.get(m.group(2), m.group(2))
    ok = {
        "Min": 1 <= amount <= 59,
        "Hour": 1 <= amount <= 23,
        "Day": amount == 1,
        "Week": amount == 1,
        "Month": amount in (1, 2, 3, 6, 12),
    }[unit]
    if not ok:
        raise bad_request(f"invalid timeframe: {text!r}")
    return TimeFrame(amount, unit)


def _midnight_ns(d: date) -> int:
    return to_utc_ns(datetime(d.year, d.month, d.day, tzinfo=ET))


@dataclass
class View:
    """One symbol's bars of one session on one feed: ``orig`` as first sent, ``final`` once corrected
    (``fixed`` marks the corrected bars); ``chunk`` caches ``final`` serialized."""

    orig: SessionBars
    final: SessionBars
    fixed: np.ndarray
    chunk: Chunk | None = None

    def pending(self, now_ns: int) -> np.ndarray:
        """Bars whose correction is not out yet at ``now_ns``."""
        return self.fixed & (self.final.t + VISIBLE_AFTER_NS > now_ns)

    def as_of(self, now_ns: int) -> SessionBars:
        """The bars as REST serves them at ``now_ns``."""
        p = self.pending(now_ns)
        if not p.any():
            return self.final
        return SessionBars(*(np.where(p, getattr(self.orig, k), getattr(self.final, k)) for k in FIELDS))


class BarStore:
    """Bars of every known symbol; sessions are generated (or read from CSV) on demand and cached."""

    def __init__(self, seed: int = 0, extra_symbols: Iterable[str] = (), csv_dir: str | Path | None = None,
                 cache_sessions: int = 2000, rules: Rules | None = None) -> None:
        self.seed = seed
        self.rules = rules or Rules()
        self.symbols: dict[str, SymbolInfo] = {}
        for sym in [*UNIVERSE, *extra_symbols]:
            self.add_symbol(sym)
        self.csv: dict[str, dict[date, SessionBars]] = {}
        if csv_dir is not None:
            files = sorted(Path(csv_dir).glob("*.csv"))
            if not files:
                raise ValueError(f"no *.csv files in {csv_dir}")
            for f in files:
                sym = f.stem.upper()
                self.csv[sym] = load_csv(f)
                prev = self.symbols.get(sym)
                self.symbols[sym] = SymbolInfo(sym, prev.exchange if prev else "NYSE", prev.name if prev else sym,
                                               "csv")
        self._true: OrderedDict[tuple[str, date], SessionBars] = OrderedDict()
        self._views: OrderedDict[tuple[str, date, str], View] = OrderedDict()
        self._daily: dict[tuple[str, date, str], SessionBars] = {}
        self._cache_size = cache_sessions
        self._token_key = hashlib.sha256(f"openbell-sim-page-{seed}".encode()).digest()

    def add_symbol(self, symbol: str) -> None:
        """Know ``symbol`` (a synthetic stock unless it is in the universe or already known)."""
        sym = symbol.upper()
        if sym not in self.symbols:
            spec = spec_for(sym)
            self.symbols[sym] = SymbolInfo(sym, spec.exchange, spec.name, "synthetic")

    def known(self, symbol: str) -> bool:
        return symbol.upper() in self.symbols

    def feed_key(self, feed: str) -> str:
        """The bars a feed sees: ``iex`` differs from the rest only on a sparse market."""
        return "iex" if self.rules.sparse and feed == "iex" else "sip"

    def days(self, symbol: str, d0: date, d1: date) -> list[date]:
        """Dates with bars for ``symbol`` between d0 and d1 inclusive."""
        if symbol in self.csv:
            return [d for d in sorted(self.csv[symbol]) if d0 <= d <= d1]
        return [s.date for s in sessions_between(d0, d1)]

    def _remember(self, cache: OrderedDict[Any, Any], key: Any, value: Any) -> None:
        cache[key] = value
        if len(cache) > self._cache_size:
            cache.popitem(last=False)

    def true_session(self, symbol: str, day: date) -> SessionBars:
        """Every 1-minute bar of ``symbol`` on ``day`` at raw prices, as all exchanges together trade it."""
        key = (symbol, day)
        hit = self._true.get(key)
        if hit is not None:
            self._true.move_to_end(key)
            return hit
        if symbol in self.csv:
            bars = self.csv[symbol].get(day) or concat([])
        elif is_session(day):
            bars = scaled(synthetic_session(symbol, day, self.seed), self.rules.splits.raw_factor(symbol, day))
        else:
            bars = concat([])
        self._remember(self._true, key, bars)
        return bars

    def view(self, symbol: str, day: date, feed: str = "sip") -> View:
        """``symbol``'s bars on ``day`` as ``feed`` serves them."""
        key = (symbol, day, self.feed_key(feed))
        hit = self._views.get(key)
        if hit is not None:
            self._views.move_to_end(key)
            return hit
        bars = self.true_session(symbol, day)
        keep = ~self.rules.halts.halted_minutes(symbol, bars.t)
        if key[2] == "iex" and symbol not in self.csv and len(bars):
            keep &= ~no_trade_minutes(symbol, day, self.seed, len(bars))
        fixed, final = np.zeros(len(bars), dtype=bool), bars
        if self.rules.corrections > 0 and len(bars):
            fixed, final = correct(symbol, day, self.seed, self.rules.corrections, bars)
        if not keep.all():  # else the view shares the arrays
            bars, final, fixed = bars.take(keep), final.take(keep), fixed[keep]
        view = View(bars, final, fixed)
        self._remember(self._views, key, view)
        return view

    def chunk(self, symbol: str, day: date, feed: str = "sip") -> Chunk:
        """The corrected bars of ``view(symbol, day, feed)``, serialized."""
        view = self.view(symbol, day, feed)
        if view.chunk is None:
            view.chunk = Chunk.build(view.final.t, serialize(view.final))
        return view.chunk

    # -- prices ---------------------------------------------------------------------------------

    def price_at(self, symbol: str, now: datetime) -> float | None:
        """The open of the minute in progress, else the close of the last completed bar (raw)."""
        now_ns = to_utc_ns(now)
        d = now.astimezone(ET).date()
        for back in range(0, 15):
            bars = self.true_session(symbol, d - timedelta(days=back))
            if len(bars) == 0:
                continue
            i = int(np.searchsorted(bars.t, now_ns, side="right")) - 1
            if i < 0:
                continue
            if bars.t[i] + NS_PER_MIN > now_ns:
                return float(bars.o[i])
            return float(bars.c[i])
        return None

    def prev_close(self, symbol: str, now: datetime) -> float | None:
        """The last close of the latest day before ``now``'s date (Eastern), split-adjusted to that date."""
        d = now.astimezone(ET).date()
        for back in range(1, 15):
            day = d - timedelta(days=back)
            bars = self.true_session(symbol, day)
            if len(bars):
                return float(bars.c[-1]) / self.rules.splits.adjust_factor(symbol, day, d)
        return None

    def bar_at(self, symbol: str, start: datetime, feed: str = "sip") -> tuple[SessionBars, int] | None:
        """The bar of ``symbol`` starting exactly at ``start`` on ``feed``, as first sent."""
        view = self.view(symbol, start.astimezone(ET).date(), feed)
        t = to_utc_ns(start)
        i = int(np.searchsorted(view.orig.t, t))
        if i < len(view.orig) and view.orig.t[i] == t:
            return view.orig, i
        return None

    def correction_at(self, symbol: str, start: datetime, feed: str = "sip") -> tuple[SessionBars, int] | None:
        """The corrected bar of ``symbol`` starting at ``start`` on ``feed``, if that bar is corrected."""
        view = self.view(symbol, start.astimezone(ET).date(), feed)
        t = to_utc_ns(start)
        i = int(np.searchsorted(view.final.t, t))
        if i < len(view.final) and view.final.t[i] == t and view.fixed[i]:
            return view.final, i
        return None

    def daily_bar(self, symbol: str, day: date, feed: str, now_ns: int, until_ns: int | None = None) -> SessionBars:
        """The day's bar (stamped at midnight Eastern) from bars starting before ``until_ns``, as of ``now_ns``."""
        key = (symbol, day, self.feed_key(feed))
        if until_ns is None and key in self._daily:
            return self._daily[key]
        view = self.view(symbol, day, feed)
        bars = view.as_of(now_ns)
        if until_ns is not None:
            bars = bars.take(slice(0, int(np.searchsorted(bars.t, until_ns))))
        out = aggregate(bars, np.full(len(bars), _midnight_ns(day), dtype=np.int64))
        if until_ns is None and not view.pending(now_ns).any():
            self._daily[key] = out
        return out

    # -- REST: /v2/stocks/bars ------------------------------------------------------------------

    def _token(self, symbol: str, t: int) -> str:
        raw = f"{symbol}|{t}".encode()
        sig = hmac.new(self._token_key, raw, hashlib.sha256).hexdigest()[:12]
        return base64.urlsafe_b64encode(raw + b"|" + sig.encode()).decode()

    def _untoken(self, token: str) -> tuple[str, int]:
        try:
            raw = base64.urlsafe_b64decode(token.encode() + b"=" * (-len(token) % 4))
            symbol, t, sig = raw.decode().split("|")
            good = hmac.new(self._token_key, f"{symbol}|{t}".encode(), hashlib.sha256).hexdigest()[:12]
            if not hmac.compare_digest(sig, good):
                raise ValueError
            return symbol, int(t)
        except (ValueError, UnicodeDecodeError):
            raise bad_request("invalid page token") from None

    def _day_bars(self, symbol: str, d: date, feed: str, now_ns: int, factor: float) -> SessionBars:
        """One day's bars as REST serves them at ``now_ns``: completed minutes only, adjusted by ``factor``."""
        bars = self.view(symbol, d, feed).as_of(now_ns)
        k = int(np.searchsorted(bars.t, now_ns - NS_PER_MIN, side="right"))  # a bar exists once its minute is over
        return adjusted(bars.take(slice(0, k)) if k < len(bars) else bars, factor)

    def _minute_chunk(self, symbol: str, d: date, feed: str, now_ns: int, factor: float) -> Chunk | None:
        view = self.view(symbol, d, feed)
        k = int(np.searchsorted(view.final.t, now_ns - NS_PER_MIN, side="right"))
        if k == 0:
            return None
        if factor == 1.0 and not view.pending(now_ns)[:k].any():
            ch = self.chunk(symbol, d, feed)
            return ch if k == len(ch.t) else Chunk(ch.t[:k], ch.blob, ch.offs[: k + 1])
        bars = self._day_bars(symbol, d, feed, now_ns, factor)
        return Chunk.build(bars.t, serialize(bars))

    def _symbol_chunks(self, symbol: str, tf: TimeFrame, start_ns: int, end_ns: int, now_ns: int, feed: str,
                       adjust: bool) -> list[Chunk]:
        """The symbol's chunks of serialized bars in ascending time, not yet cut to [start, end]."""
        d0 = pd.Timestamp(start_ns, tz="UTC").tz_convert(ET).date()
        d1 = pd.Timestamp(min(end_ns, now_ns), tz="UTC").tz_convert(ET).date()
        today = pd.Timestamp(now_ns, tz="UTC").tz_convert(ET).date()
        if tf.unit == "Week":
            d0 -= timedelta(days=7)
        elif tf.unit == "Month":
            d0 = date(d0.year - (1 if d0.month <= tf.amount else 0), 1, 1)
        days = self.days(symbol, d0, d1)
        splits = self.rules.splits
        factors = {d: splits.adjust_factor(symbol, d, today) if adjust else 1.0 for d in days}
        if tf.unit == "Min" and tf.amount == 1:
            chunks = (self._minute_chunk(symbol, d, feed, now_ns, factors[d]) for d in days)
            return [ch for ch in chunks if ch is not None]
        if tf.unit in ("Min", "Hour"):
            width = tf.amount * (NS_PER_MIN if tf.unit == "Min" else 60 * NS_PER_MIN)
            parts = []
            for d in days:
                bars = self._day_bars(symbol, d, feed, now_ns, factors[d])
                parts.append(aggregate(bars, bars.t // width * width))
            agg = concat(parts)
        else:
            visible = now_ns - NS_PER_MIN
            daily = []
            for d in days:
                t = self.view(symbol, d, feed).final.t
                if len(t) == 0 or t[0] > visible:
                    continue
                bar = self.daily_bar(symbol, d, feed, now_ns, None if t[-1] <= visible else visible + 1)
                daily.append(adjusted(bar, factors[d]))
            agg = concat(daily)
            if tf.unit != "Day" and len(agg):
                stamps = pd.to_datetime(agg.t, utc=True).tz_convert(ET)
                if tf.unit == "Week":
                    firsts = (stamps - pd.to_timedelta(stamps.weekday, unit="D")).normalize()
                else:
                    month0 = (stamps.month - 1) // tf.amount * tf.amount + 1
                    firsts = pd.DatetimeIndex(
                        [pd.Timestamp(y, m, 1, tz=ET) for y, m in zip(stamps.year, month0, strict=True)])
                agg = aggregate(agg, firsts.as_unit("ns").asi8 if hasattr(firsts, "as_unit") else firsts.asi8)
        return [Chunk.build(agg.t, serialize(agg))] if len(agg) else []

    def bars_json(self, symbols: list[str], tf: TimeFrame, start_ns: int, end_ns: int, limit: int,
                  desc: bool, page_token: str | None, now_ns: int, feed: str = "sip", adjust: bool = False) -> bytes:
        """The body of ``GET /v2/stocks/bars``: ``limit`` bars across symbols (sorted), then a page token;
        ``adjust`` asks for split-adjusted prices."""
        syms = sorted(set(symbols))
        tok_sym, tok_t = self._untoken(page_token) if page_token else (None, None)
        if tok_sym is not None and tok_sym not in syms:
            raise bad_request("invalid page token")
        remaining = limit
        parts: list[bytes] = []
        next_token: str | None = None
        for sym in syms:
            if tok_sym is not None and sym < tok_sym:
                continue
            chunks = self._symbol_chunks(sym, tf, start_ns, end_ns, now_ns, feed, adjust)
            if desc:
                chunks = chunks[::-1]
            pieces: list[bytes] = []
            for ch in chunks:
                lo = int(np.searchsorted(ch.t, start_ns, side="left"))
                hi = int(np.searchsorted(ch.t, end_ns, side="right"))
                if sym == tok_sym and tok_t is not None:
                    if desc:
                        hi = min(hi, int(np.searchsorted(ch.t, tok_t, side="right")))
                    else:
                        lo = max(lo, int(np.searchsorted(ch.t, tok_t, side="left")))
                if hi <= lo:
                    continue
                if remaining == 0:
                    next_token = self._token(sym, int(ch.t[hi - 1] if desc else ch.t[lo]))
                    break
                take = min(remaining, hi - lo)
                if desc:
                    pieces.extend(ch.items_desc(hi - take, hi))
                    if take < hi - lo:
                        next_token = self._token(sym, int(ch.t[hi - take - 1]))
                else:
                    pieces.append(ch.slice_asc(lo, lo + take))
                    if take < hi - lo:
                        next_token = self._token(sym, int(ch.t[lo + take]))
                remaining -= take
                if next_token:
                    break
            if pieces:
                parts.append(b'"' + sym.encode() + b'":[' + b",".join(pieces) + b"]")
            if next_token:
                break
        tok = orjson.dumps(next_token)
        return b'{"bars":{' + b",".join(parts) + b'},"next_page_token":' + tok + b"}"

    def latest_bars(self, symbols: list[str], now_ns: int, feed: str = "sip") -> dict[str, Any]:
        """The last completed 1-minute bar of each symbol, as ``GET /v2/stocks/bars/latest`` returns."""
        out: dict[str, Any] = {}
        d = pd.Timestamp(now_ns, tz="UTC").tz_convert(ET).date()
        for sym in symbols:
            for back in range(15):
                bars = self.view(sym, d - timedelta(days=back), feed).as_of(now_ns)
                k = int(np.searchsorted(bars.t, now_ns - NS_PER_MIN, side="right"))
                if k:
                    out[sym] = orjson.loads(serialize(bars.take(slice(k - 1, k)))[0])
                    break
        return out


def bar_message(kind: str, symbol: str, bars: SessionBars, i: int) -> dict[str, Any]:
    """A stream bar (``T`` = b, u or d) with ``t`` as a msgpack Timestamp."""
    return {
        "T": kind,
        "S": symbol,
        "o": float(bars.o[i]),
        "h": float(bars.h[i]),
        "l": float(bars.l[i]),
        "c": float(bars.c[i]),
        "v": int(bars.v[i]),
        "t": msgpack.Timestamp.from_unix_nano(int(bars.t[i])),
        "n": int(bars.n[i]),
        "vw": float(bars.vw[i]),
    }


def check_symbols(store: BarStore, raw: str | None) -> list[str]:
    """Parse a comma-separated symbol list; unknown symbols are a 400."""
    syms = [s.strip().upper() for s in (raw or "").split(",") if s.strip()]
    if not syms:
        raise bad_request("missing symbols")
    unknown = [s for s in syms if not store.known(s)]
    if unknown:
        raise ApiError(400, 40010000, f"invalid symbol(s): {', '.join(unknown)}")
    return syms
