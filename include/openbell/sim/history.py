"""Historical bars as Alpaca's REST serves them from a :class:`~openbell.sim.feed.BarStore`:
``GET /v2/stocks/bars`` (any timeframe, across symbols, paged with signed page tokens) and
``GET /v2/stocks/bars/latest``. A bar is served once its minute is over, as of the request's market time."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import date, timedelta
from functools import cache
from typing import Any

import numpy as np
import orjson
import pandas as pd

from openbell.calendar import ET
from openbell.sim.bars import Chunk, adjusted, aggregate, concat, serialize
from openbell.sim.errors import bad_request
from openbell.sim.feed import BarStore
from openbell.sim.market import NS_PER_MIN, SessionBars
from openbell.sim.timeframes import TimeFrame

# -- page tokens ------------------------------------------------------------------------------------


@cache
def _token_key(seed: int) -> bytes:
    return hashlib.sha256(f"openbell-sim-page-{seed}".encode()).digest()


def _token(seed: int, symbol: str, t: int) -> str:
    raw = f"{symbol}|{t}".encode()
    sig = hmac.new(_token_key(seed), raw, hashlib.sha256).hexdigest()[:12]
    return base64.urlsafe_b64encode(raw + b"|" + sig.encode()).decode()


def _untoken(seed: int, token: str) -> tuple[str, int]:
    try:
        raw = base64.urlsafe_b64decode(token.encode() + b"=" * (-len(token) % 4))
        symbol, t, sig = raw.decode().split("|")
        good = hmac.new(_token_key(seed), f"{symbol}|{t}".encode(), hashlib.sha256).hexdigest()[:12]
        if not hmac.compare_digest(sig, good):
            raise ValueError
        return symbol, int(t)
    except (ValueError, UnicodeDecodeError):
        raise bad_request("invalid page token") from None


# -- one symbol's bars ------------------------------------------------------------------------------


def _day_bars(store: BarStore, symbol: str, d: date, feed: str, now_ns: int, factor: float) -> SessionBars:
    """One day's bars as REST serves them at ``now_ns``: completed minutes only, adjusted by ``factor``."""
    bars = store.view(symbol, d, feed).as_of(now_ns)
    k = int(np.searchsorted(bars.t, now_ns - NS_PER_MIN, side="right"))  # a bar exists once its minute is over
    return adjusted(bars.take(slice(0, k)) if k < len(bars) else bars, factor)


def _minute_chunk(store: BarStore, symbol: str, d: date, feed: str, now_ns: int, factor: float) -> Chunk | None:
    view = store.view(symbol, d, feed)
    k = int(np.searchsorted(view.final.t, now_ns - NS_PER_MIN, side="right"))
    if k == 0:
        return None
    if factor == 1.0 and not view.pending(now_ns)[:k].any():
        ch = store.chunk(symbol, d, feed)
        return ch if k == len(ch.t) else Chunk(ch.t[:k], ch.blob, ch.offs[: k + 1])
    bars = _day_bars(store, symbol, d, feed, now_ns, factor)
    return Chunk.build(bars.t, serialize(bars))


def _symbol_chunks(store: BarStore, symbol: str, tf: TimeFrame, start_ns: int, end_ns: int, now_ns: int, feed: str,
                   adjust: bool) -> list[Chunk]:
    """The symbol's chunks of serialized bars in ascending time, not yet cut to [start, end]."""
    d0 = pd.Timestamp(start_ns, tz="UTC").tz_convert(ET).date()
    d1 = pd.Timestamp(min(end_ns, now_ns), tz="UTC").tz_convert(ET).date()
    today = pd.Timestamp(now_ns, tz="UTC").tz_convert(ET).date()
    if tf.unit == "Week":
        d0 -= timedelta(days=7)
    elif tf.unit == "Month":
        d0 = date(d0.year - (1 if d0.month <= tf.amount else 0), 1, 1)
    days = store.days(symbol, d0, d1)
    splits = store.rules.splits
    factors = {d: splits.adjust_factor(symbol, d, today) if adjust else 1.0 for d in days}
    if tf.unit == "Min" and tf.amount == 1:
        chunks = (_minute_chunk(store, symbol, d, feed, now_ns, factors[d]) for d in days)
        return [ch for ch in chunks if ch is not None]
    if tf.unit in ("Min", "Hour"):
        width = tf.amount * (NS_PER_MIN if tf.unit == "Min" else 60 * NS_PER_MIN)
        parts = []
        for d in days:
            bars = _day_bars(store, symbol, d, feed, now_ns, factors[d])
            parts.append(aggregate(bars, bars.t // width * width))
        agg = concat(parts)
    else:
        visible = now_ns - NS_PER_MIN
        daily = []
        for d in days:
            t = store.view(symbol, d, feed).final.t
            if len(t) == 0 or t[0] > visible:
                continue
            bar = store.daily_bar(symbol, d, feed, now_ns, None if t[-1] <= visible else visible + 1)
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


# -- the endpoints' bodies --------------------------------------------------------------------------


def bars_json(store: BarStore, symbols: list[str], tf: TimeFrame, start_ns: int, end_ns: int, limit: int,
              desc: bool, page_token: str | None, now_ns: int, feed: str = "sip", adjust: bool = False) -> bytes:
    """The body of ``GET /v2/stocks/bars``: ``limit`` bars across symbols (sorted), then a page token;
    ``adjust`` asks for split-adjusted prices."""
    syms = sorted(set(symbols))
    tok_sym, tok_t = _untoken(store.seed, page_token) if page_token else (None, None)
    if tok_sym is not None and tok_sym not in syms:
        raise bad_request("invalid page token")
    remaining = limit
    parts: list[bytes] = []
    next_token: str | None = None
    for sym in syms:
        if tok_sym is not None and sym < tok_sym:
            continue
        chunks = _symbol_chunks(store, sym, tf, start_ns, end_ns, now_ns, feed, adjust)
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
                next_token = _token(store.seed, sym, int(ch.t[hi - 1] if desc else ch.t[lo]))
                break
            take = min(remaining, hi - lo)
            if desc:
                pieces.extend(ch.items_desc(hi - take, hi))
                if take < hi - lo:
                    next_token = _token(store.seed, sym, int(ch.t[hi - take - 1]))
            else:
                pieces.append(ch.slice_asc(lo, lo + take))
                if take < hi - lo:
                    next_token = _token(store.seed, sym, int(ch.t[lo + take]))
            remaining -= take
            if next_token:
                break
        if pieces:
            parts.append(b'"' + sym.encode() + b'":[' + b",".join(pieces) + b"]")
        if next_token:
            break
    tok = orjson.dumps(next_token)
    return b'{"bars":{' + b",".join(parts) + b'},"next_page_token":' + tok + b"}"


def latest_bars(store: BarStore, symbols: list[str], now_ns: int, feed: str = "sip") -> dict[str, Any]:
    """The last completed 1-minute bar of each symbol, as ``GET /v2/stocks/bars/latest`` returns."""
    out: dict[str, Any] = {}
    d = pd.Timestamp(now_ns, tz="UTC").tz_convert(ET).date()
    for sym in symbols:
        for back in range(15):
            bars = store.view(sym, d - timedelta(days=back), feed).as_of(now_ns)
            k = int(np.searchsorted(bars.t, now_ns - NS_PER_MIN, side="right"))
            if k:
                out[sym] = orjson.loads(serialize(bars.take(slice(k - 1, k)))[0])
                break
    return out
