"""The simulator's bar store: synthetic or CSV 1-minute bars per (symbol, session), cached and
pre-serialized, with aggregation to larger timeframes and Alpaca's paging of ``GET /v2/stocks/bars``."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import orjson
import pandas as pd

from openbell.calendar import ET
from openbell.sim.errors import ApiError, bad_request
from openbell.sim.market import NS_PER_MIN, UNIVERSE, SessionBars, spec_for, synthetic_session
from openbell.sim.playback import is_session, sessions_between, to_utc_ns

CSV_COLUMNS = ("timestamp", "open", "high", "low", "close", "volume")
FIELDS = ("t", "o", "h", "l", "c", "v", "n", "vw")


@dataclass(frozen=True)
class SymbolInfo:
    symbol: str
    exchange: str
    name: str
    source: str  # "synthetic" or "csv"


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


SYMBOL = re.compile(r"[A-Z0-9]+(?:[./][A-Z0-9]+)*")


def parse_symbol(text: object) -> str:
    """An upper-cased ticker: 1-10 characters of A-Z, 0-9, '.' and '/', letters or digits at both ends
    and no two separators in a row (``BRK.B``, ``BRK/B``); ValueError otherwise."""
    sym = text.upper() if isinstance(text, str) and text.isascii() else ""
    if len(sym) > 10 or not SYMBOL.fullmatch(sym):
        raise ValueError(f"expected a symbol (1-10 of A-Z 0-9 . /), got {text!r}")
    return sym


def load_csv(path: Path) -> dict[date, SessionBars]:
    """Read one symbol's minute bars (``timestamp,open,high,low,close,volume[,trade_count,vwap]``).

    Naive timestamps are UTC (as in Alpaca's API); each timestamp is the bar's start. Missing
    ``trade_count``/``vwap`` are derived (volume/100, typical price). ValueError names the problem.
    """
    try:
        df = pd.read_csv(path)
    except Exception as exc:
        raise ValueError(f"{path}: cannot read CSV: {exc}") from exc
    missing = [c for c in CSV_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(missing)}")
    try:
        ts = pd.to_datetime(df["timestamp"], utc=True, format="mixed")
        num = {c: pd.to_numeric(df[c], errors="raise").astype(float) for c in CSV_COLUMNS[1:]}
    except Exception as exc:
        raise ValueError(f"{path}: {exc}") from exc
    o, h, lo, c, v = (num[k].to_numpy() for k in ("open", "high", "low", "close", "volume"))
    bad = ~np.isfinite(o + h + lo + c + v) | (np.minimum.reduce([o, h, lo, c]) <= 0) | (v < 0) | \
        (h < np.maximum(o, c)) | (lo > np.minimum(o, c))
    if bad.any():
        row = int(np.flatnonzero(bad)[0]) + 2
        raise ValueError(f"{path}: line {row}: prices must be positive with low <= open,close <= high")
    n = (pd.to_numeric(df["trade_count"], errors="coerce").to_numpy() if "trade_count" in df
         else np.full(len(df), np.nan))
    n = np.where(np.isfinite(n), n, np.maximum(1, v // 100)).astype(np.int64)
    vw = pd.to_numeric(df["vwap"], errors="coerce").to_numpy() if "vwap" in df else np.full(len(df), np.nan)
    vw = np.where(np.isfinite(vw), vw, np.round((o + h + lo + c) / 4, 4))
    t = ts.astype("int64").to_numpy() if hasattr(ts, "astype") else np.asarray(ts)
    t = ts.dt.as_unit("ns").astype("int64").to_numpy()
    order = np.argsort(t, kind="stable")
    t, o, h, lo, c, v, n, vw = (a[order] for a in (t, o, h, lo, c, v, n, vw))
    if len(t) > 1 and (np.diff(t) == 0).any():
        raise ValueError(f"{path}: duplicate timestamps")
    days = pd.to_datetime(t, utc=True).tz_convert(ET).date
    out: dict[date, SessionBars] = {}
    for d in sorted(set(days)):
        m = days == d
        out[d] = SessionBars(t[m], o[m], h[m], lo[m], c[m], v[m].astype(np.int64), n[m], vw[m])
    return out


@dataclass
class Chunk:
    """A run of serialized bars: ``blob`` = items joined by commas, item i = blob[offs[i]:offs[i+1]-1]."""

    t: np.ndarray
    blob: bytes
    offs: np.ndarray

    @classmethod
    def build(cls, t: np.ndarray, items: list[bytes]) -> Chunk:
        lens = np.fromiter((len(x) + 1 for x in items), dtype=np.int64, count=len(items))
        offs = np.concatenate(([0], np.cumsum(lens)))
        return cls(t, b",".join(items), offs)

    def slice_asc(self, i: int, j: int) -> bytes:
        return self.blob[self.offs[i] : self.offs[j] - 1]

    def items_desc(self, i: int, j: int) -> list[bytes]:
        o = self.offs
        return [self.blob[o[k] : o[k + 1] - 1] for k in range(j - 1, i - 1, -1)]


def serialize(bars: SessionBars, t: np.ndarray | None = None) -> list[bytes]:
    """One JSON object per bar, as Alpaca's REST API writes them."""
    t = bars.t if t is None else t
    stamps = np.datetime_as_string(t.astype("datetime64[ns]").astype("datetime64[s]"), unit="s")
    dumps = orjson.dumps
    o, h, lo, c, v, n, vw = (a.tolist() for a in (bars.o, bars.h, bars.l, bars.c, bars.v, bars.n, bars.vw))
    return [
        dumps({"t": s + "Z", "o": o[i], "h": h[i], "l": lo[i], "c": c[i], "v": v[i], "n": n[i], "vw": vw[i]})
        for i, s in enumerate(stamps.tolist())
    ]


def aggregate(bars: SessionBars, keys: np.ndarray) -> SessionBars:
    """Combine consecutive bars sharing a key (keys sorted) into one bar stamped with the key."""
    if len(bars) == 0:
        return bars
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    ends = np.r_[starts[1:] - 1, len(keys) - 1]
    v = np.add.reduceat(bars.v, starts)
    pv = np.add.reduceat(bars.vw * bars.v, starts)
    vw = np.where(v > 0, pv / np.maximum(v, 1), bars.c[ends])
    return SessionBars(
        keys[starts], bars.o[starts], np.maximum.reduceat(bars.h, starts), np.minimum.reduceat(bars.l, starts),
        bars.c[ends], v, np.add.reduceat(bars.n, starts), np.round(vw, 4),
    )


def _midnight_ns(d: date) -> int:
    return to_utc_ns(datetime(d.year, d.month, d.day, tzinfo=ET))


def _concat(parts: list[SessionBars]) -> SessionBars:
    if not parts:
        return SessionBars(*(np.empty(0, dtype=np.int64 if k in "tvn" else float) for k in FIELDS))
    return SessionBars(*(np.concatenate([getattr(p, k) for p in parts]) for k in FIELDS))


class BarStore:
    """Bars of every known symbol; sessions are generated (or read from CSV) on demand and cached."""

    def __init__(self, seed: int = 0, extra_symbols: Iterable[str] = (), csv_dir: str | Path | None = None,
                 cache_sessions: int = 2000) -> None:
        self.seed = seed
        self.symbols: dict[str, SymbolInfo] = {}
        for sym in [*UNIVERSE, *(s.upper() for s in extra_symbols)]:
            spec = spec_for(sym)
            self.symbols[sym] = SymbolInfo(sym, spec.exchange, spec.name, "synthetic")
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
        self._cache: OrderedDict[tuple[str, date], tuple[SessionBars, Chunk | None]] = OrderedDict()
        self._daily: dict[tuple[str, date], SessionBars] = {}
        self._cache_size = cache_sessions
        self._token_key = hashlib.sha256(f"openbell-sim-page-{seed}".encode()).digest()

    def known(self, symbol: str) -> bool:
        return symbol.upper() in self.symbols

    def days(self, symbol: str, d0: date, d1: date) -> list[date]:
        """Dates with bars for ``symbol`` between d0 and d1 inclusive."""
        if symbol in self.csv:
            return [d for d in sorted(self.csv[symbol]) if d0 <= d <= d1]
        return [s.date for s in sessions_between(d0, d1)]

    def _entry(self, symbol: str, day: date) -> tuple[SessionBars, Chunk | None]:
        key = (symbol, day)
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            return hit
        if symbol in self.csv:
            bars = self.csv[symbol].get(day) or _concat([])
        elif is_session(day):
            bars = synthetic_session(symbol, day, self.seed)
        else:
            bars = _concat([])
        entry: tuple[SessionBars, Chunk | None] = (bars, None)
        self._cache[key] = entry
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return entry

    def session(self, symbol: str, day: date) -> SessionBars:
        """All 1-minute bars of ``symbol`` on ``day`` (possibly empty)."""
        return self._entry(symbol, day)[0]

    def chunk(self, symbol: str, day: date) -> Chunk:
        bars, chunk = self._entry(symbol, day)
        if chunk is None:
            chunk = Chunk.build(bars.t, serialize(bars))
            self._cache[(symbol, day)] = (bars, chunk)
        return chunk

    # -- prices ---------------------------------------------------------------------------------

    def price_at(self, symbol: str, now: datetime) -> float | None:
        """The open of the minute in progress, else the close of the last completed bar."""
        now_ns = to_utc_ns(now)
        d = now.astimezone(ET).date()
        for back in range(0, 15):
            day = d - timedelta(days=back)
            bars = self.session(symbol, day)
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
        """The last close of the latest day before ``now``'s date (Eastern)."""
        d = now.astimezone(ET).date()
        for back in range(1, 15):
            bars = self.session(symbol, d - timedelta(days=back))
            if len(bars):
                return float(bars.c[-1])
        return None

    def bar_at(self, symbol: str, start: datetime) -> tuple[SessionBars, int] | None:
        """The bar of ``symbol`` starting exactly at ``start``."""
        bars = self.session(symbol, start.astimezone(ET).date())
        t = to_utc_ns(start)
        i = int(np.searchsorted(bars.t, t))
        if i < len(bars) and bars.t[i] == t:
            return bars, i
        return None

    def daily_bar(self, symbol: str, day: date, until_ns: int | None = None) -> SessionBars:
        """The day's bar (stamped at midnight Eastern) from bars starting before ``until_ns``."""
        key = (symbol, day)
        if until_ns is None and key in self._daily:
            return self._daily[key]
        bars = self.session(symbol, day)
        if until_ns is not None:
            bars = bars.take(slice(0, int(np.searchsorted(bars.t, until_ns))))
        out = aggregate(bars, np.full(len(bars), _midnight_ns(day), dtype=np.int64))
        if until_ns is None:
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

    def _symbol_chunks(self, symbol: str, tf: TimeFrame, start_ns: int, end_ns: int, now_ns: int) -> list[Chunk]:
        """The symbol's chunks of serialized bars in ascending time, not yet cut to [start, end]."""
        visible = now_ns - NS_PER_MIN  # a minute bar exists once its minute is over
        d0 = pd.Timestamp(start_ns, tz="UTC").tz_convert(ET).date()
        d1 = pd.Timestamp(min(end_ns, now_ns), tz="UTC").tz_convert(ET).date()
        if tf.unit == "Week":
            d0 -= timedelta(days=7)
        elif tf.unit == "Month":
            d0 = date(d0.year - (1 if d0.month <= tf.amount else 0), 1, 1)
        days = self.days(symbol, d0, d1)
        if tf.unit == "Min" and tf.amount == 1:
            out = []
            for d in days:
                ch = self.chunk(symbol, d)
                if len(ch.t) and ch.t[0] > visible:
                    continue
                if len(ch.t) and ch.t[-1] > visible:
                    k = int(np.searchsorted(ch.t, visible, side="right"))
                    ch = Chunk(ch.t[:k], ch.blob, ch.offs[: k + 1])
                out.append(ch)
            return out
        if tf.unit in ("Min", "Hour"):
            width = tf.amount * (NS_PER_MIN if tf.unit == "Min" else 60 * NS_PER_MIN)
            parts = []
            for d in days:
                bars = self.session(symbol, d)
                if len(bars) and bars.t[-1] > visible:
                    bars = bars.take(slice(0, int(np.searchsorted(bars.t, visible, side="right"))))
                parts.append(aggregate(bars, bars.t // width * width))
            agg = _concat(parts)
        else:
            daily = []
            for d in days:
                last = self.session(symbol, d)
                if len(last) == 0 or last.t[0] > visible:
                    continue
                daily.append(self.daily_bar(symbol, d, None if last.t[-1] <= visible else visible + 1))
            agg = _concat(daily)
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
                  desc: bool, page_token: str | None, now_ns: int) -> bytes:
        """The body of ``GET /v2/stocks/bars``: ``limit`` bars across symbols (sorted), then a page token."""
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
            chunks = self._symbol_chunks(sym, tf, start_ns, end_ns, now_ns)
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

    def latest_bars(self, symbols: list[str], now_ns: int) -> dict[str, Any]:
        """The last completed 1-minute bar of each symbol, as ``GET /v2/stocks/bars/latest`` returns."""
        out: dict[str, Any] = {}
        now = pd.Timestamp(now_ns, tz="UTC").to_pydatetime()
        d = now.astimezone(ET).date()
        for sym in symbols:
            for back in range(15):
                bars = self.session(sym, d - timedelta(days=back))
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
