"""The simulator's bar store: synthetic or CSV 1-minute bars per (symbol, session, feed), cached and
pre-serialized, and the prices the broker and the streams read from them (REST serves them through
:mod:`~openbell.sim.history`).

What it serves follows :class:`Rules`: raw prices show splits (:mod:`~openbell.sim.splits`), halted
minutes have no bar (:mod:`~openbell.sim.halts`), the IEX feed of a sparse market has no bar for a minute
without an IEX trade (:mod:`~openbell.sim.liquidity`) and corrected bars change 30 market seconds after
their bar (:mod:`~openbell.sim.corrections`). The broker trades on the dense raw market
(:meth:`BarStore.true_session`), which every exchange together makes."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from openbell.calendar import ET
from openbell.sim.bars import FIELDS, Chunk, aggregate, concat, scaled, serialize
from openbell.sim.corrections import VISIBLE_AFTER_NS, correct
from openbell.sim.csvbars import load_csv
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
