"""Bar arithmetic shared by the bar store: serialization as Alpaca writes bars, runs of pre-serialized
bars, aggregation to larger timeframes and price scaling for splits."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import orjson

from openbell.sim.market import SessionBars, round_prices

FIELDS = ("t", "o", "h", "l", "c", "v", "n", "vw")


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


def concat(parts: list[SessionBars]) -> SessionBars:
    if not parts:
        return SessionBars(*(np.empty(0, dtype=np.int64 if k in "tvn" else float) for k in FIELDS))
    return SessionBars(*(np.concatenate([getattr(p, k) for p in parts]) for k in FIELDS))


def scaled(bars: SessionBars, factor: float) -> SessionBars:
    """Raw bars at ``factor`` times the synthetic level (volume divided by it)."""
    if factor == 1.0:
        return bars
    floor = np.where(bars.c * factor >= 1.0, 0.01, 0.0001)
    o, h, lo, c = (np.maximum(round_prices(a * factor), floor) for a in (bars.o, bars.h, bars.l, bars.c))
    vw = np.clip(np.round(bars.vw * factor, 4), lo, h)
    v = np.maximum(1, np.round(bars.v / factor)).astype(np.int64)
    return SessionBars(bars.t, o, h, lo, c, v, bars.n, vw)


def adjusted(bars: SessionBars, factor: float) -> SessionBars:
    """Split-adjusted bars: prices divided by ``factor``, volume multiplied by it."""
    if factor == 1.0:
        return bars
    o, h, lo, c, vw = (np.round(a / factor, 4) for a in (bars.o, bars.h, bars.l, bars.c, bars.vw))
    v = np.maximum(1, np.round(bars.v * factor)).astype(np.int64)
    return SessionBars(bars.t, o, h, lo, c, v, bars.n, vw)
