"""Risk limits applied to any strategy's targets before they reach the broker.

Invalid weights (NaN, inf, non-numeric, negative when shorts are not allowed or the symbol may not be sold
short, unknown symbols) become 0 or are dropped, each with a note; per-symbol and gross limits clip; once
the equity has lost more than ``daily_loss_limit`` since the day's start (plus the extra loss budget in
dollars an operator granted with a resume, :meth:`RiskGate.resume`), every target is 0 until such a resume (latched).
Each kind of change is logged at WARNING once per (symbol, reason) and day, and counted after that.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RiskLimits:
    """Limits on target weights (fractions of equity). With ``allow_short``, ``shortable`` (None: any) names
    the symbols a negative weight may stand for: the assets the broker says are shortable and easy to borrow."""

    max_weight: float = 0.25
    max_gross: float = 1.0
    daily_loss_limit: float | None = 0.03
    allow_short: bool = False
    shortable: frozenset[str] | None = None

    def __post_init__(self) -> None:
        if not _number(self.max_weight) or not 0 < self.max_weight <= 1:
            raise ValueError(f"max_weight must be in (0, 1], got {self.max_weight!r}")
        if not _number(self.max_gross) or not 0 < self.max_gross <= 2:
            raise ValueError(f"max_gross must be in (0, 2], got {self.max_gross!r}")
        if self.daily_loss_limit is not None and (
            not _number(self.daily_loss_limit) or not 0 < self.daily_loss_limit <= 0.5
        ):
            raise ValueError(f"daily_loss_limit must be None or in (0, 0.5], got {self.daily_loss_limit!r}")
        if not isinstance(self.allow_short, bool):
            raise ValueError(f"allow_short must be a bool, got {self.allow_short!r}")
        if self.shortable is not None and not isinstance(self.shortable, frozenset):
            raise ValueError(f"shortable must be a frozenset of symbols or None, got {self.shortable!r}")


def _number(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def clip_weights(w: np.ndarray, limits: RiskLimits, symbols: Sequence[str] | None = None) -> np.ndarray:
    """Weights (..., N) within the limits: non-finite -> 0, shorts -> 0 unless allowed (and, with ``symbols`` the
    N columns' names, of a symbol outside ``limits.shortable`` when it names some), caps, gross."""
    w = np.where(np.isfinite(w), w, 0.0)
    if not limits.allow_short:
        w = np.maximum(w, 0.0)
    elif limits.shortable is not None and symbols is not None:
        barred = np.array([sym not in limits.shortable for sym in symbols], dtype=bool)
        w = np.where(barred & (w < 0), 0.0, w)
    w = np.clip(w, -limits.max_weight, limits.max_weight)
    gross = np.abs(w).sum(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        scale = np.where(gross > limits.max_gross, limits.max_gross / gross, 1.0)
    return w * scale


class RiskGate:
    """Stateful gate for one trading day; restore ``day_start_equity``/``stopped``/``extra_loss`` after a
    restart. ``extra_loss`` (dollars) is the extra loss budget resumes after a loss stop granted today."""

    def __init__(self, limits: RiskLimits, universe: Iterable[str] | None = None,
                 day_start_equity: float | None = None, stopped: bool = False, extra_loss: float = 0.0) -> None:
        self.limits = limits
        self.universe = None if universe is None else frozenset(universe)
        self.day_start_equity: float | None = None
        extra_loss = _check_extra_loss(extra_loss)
        self.clips: Counter[tuple[str, str]] = Counter()  # (symbol or "*", reason) -> changes today
        # a caller on a latency-critical path sets this and calls flush_logs() when it has time
        self.defer_logs = False
        self._unlogged: list[str] = []
        if day_start_equity is not None:
            self.start_day(day_start_equity)
        self.extra_loss = extra_loss
        self.stopped = bool(stopped)
        self.stop_reason: str | None = "restored as stopped for the day" if stopped else None

    def start_day(self, equity: float) -> None:
        """Begin a new day at ``equity``; clears the loss latch, the extra loss budget and the counts of
        changes."""
        self.day_start_equity = _check_equity(equity)
        self.extra_loss = 0.0
        self.stopped = False
        self.stop_reason = None
        self.clips.clear()

    def resume(self, extra_loss: float) -> None:
        """Trade again after a stop, with ``extra_loss`` (dollars: the day's cumulative extra loss budget)
        on top of the daily loss limit. The day's start is not moved: the limit still counts from the open,
        so a resume without a budget stops again at the next decision if the loss is still past it."""
        self.extra_loss = _check_extra_loss(extra_loss)
        self.stopped = False
        self.stop_reason = None

    def halt(self, reason: str) -> None:
        """Stop for the rest of the day (every target 0), for ``reason``: a restored or broker-measured stop."""
        if not self.stopped:
            self.stopped = True
            self.stop_reason = reason

    def breached(self, equity: float) -> bool:
        """``equity`` (e.g. the broker's own figure) is past the daily loss limit (plus the extra loss
        budget) since the day's start."""
        return self.day_start_equity is not None and loss_breached(self.limits, equity, self.day_start_equity,
                                                                   self.extra_loss)

    def clip_counts(self) -> dict[str, dict[str, int]]:
        """Changes made today: reason -> symbol ("*" for the whole portfolio) -> count."""
        out: dict[str, dict[str, int]] = {}
        for (symbol, reason), n in sorted(self.clips.items()):
            out.setdefault(reason, {})[symbol] = n
        return out

    def _note(self, notes: list[str], symbol: str, reason: str, text: str) -> None:
        notes.append(text)
        self.clips[(symbol, reason)] += 1
        if self.clips[(symbol, reason)] == 1:
            self._unlogged.append(text)
            if not self.defer_logs:
                self.flush_logs()
        else:
            log.debug("risk: %s", text)

    def flush_logs(self) -> None:
        """Log the changes seen for the first time today (once each; later ones are only counted)."""
        texts = self._unlogged[:]
        del self._unlogged[: len(texts)]  # what another thread appended meanwhile stays for next time
        for text in texts:
            log.warning("risk: %s (logged once today; later ones are counted)", text)

    def apply(self, weights: Mapping[str, object], equity: float) -> tuple[dict[str, float], list[str]]:
        """Weights safe to trade and the notes on every change made; raises ValueError on bad equity."""
        equity = _check_equity(equity)
        if not isinstance(weights, Mapping):
            raise ValueError(f"weights must be a mapping of symbol to weight, got {type(weights).__name__}")
        if self.day_start_equity is None:
            self.day_start_equity = equity
        notes: list[str] = []
        symbols: list[str] = []
        values: list[float] = []
        for symbol, raw in weights.items():
            if not isinstance(symbol, str) or (self.universe is not None and symbol not in self.universe):
                self._note(notes, str(symbol), "not_in_universe", f"dropped weight for {symbol!r}: not in the universe")
                continue
            symbols.append(symbol)
            if not _number(raw) and not isinstance(raw, np.floating | np.integer):
                self._note(notes, symbol, "not_a_number", f"{symbol}: weight {raw!r} is not a finite number, set to 0")
                values.append(0.0)
                continue
            value = float(raw)  # type: ignore[arg-type]
            if not math.isfinite(value):
                self._note(notes, symbol, "not_a_number",
                           f"{symbol}: weight {value!r} is not a finite number, set to 0")
                value = 0.0
            elif value < 0 and not self.limits.allow_short:
                self._note(notes, symbol, "short", f"{symbol}: short weight {value:g} not allowed, set to 0")
                value = 0.0
            elif value < 0 and self.limits.shortable is not None and symbol not in self.limits.shortable:
                self._note(notes, symbol, "not_shortable",
                           f"{symbol}: short weight {value:g} set to 0, the asset is not shortable and easy to borrow")
                value = 0.0
            elif abs(value) > self.limits.max_weight:
                self._note(notes, symbol, "max_weight",
                           f"{symbol}: weight {value:g} clipped to max_weight {self.limits.max_weight:g}")
            values.append(value)
        arr = np.array(values, dtype=float)
        gross = float(np.abs(np.clip(arr, -self.limits.max_weight, self.limits.max_weight)).sum())
        if gross > self.limits.max_gross:
            self._note(notes, "*", "max_gross", f"gross {gross:g} scaled down to max_gross {self.limits.max_gross:g}")
        clipped = clip_weights(arr, self.limits, symbols) if len(arr) else arr

        loss = self.limits.daily_loss_limit
        drawdown = 1.0 - equity / self.day_start_equity
        if not self.stopped and loss_breached(self.limits, equity, self.day_start_equity, self.extra_loss):
            extra = f" plus {self.extra_loss:.2f} extra loss granted" if self.extra_loss else ""
            self.stopped = True
            self.stop_reason = (
                f"daily loss {drawdown:.2%} exceeds limit {loss:.2%}{extra} "
                f"(equity {equity:.2f} vs day start {self.day_start_equity:.2f}): stopped for the day"
            )
            self._note(notes, "*", "daily_loss_limit", self.stop_reason)
        if self.stopped:
            clipped = np.zeros_like(clipped)
            if not any(n.endswith("stopped for the day") for n in notes):
                self._note(notes, "*", "stopped", "stopped for the day: all targets 0")
        return {s: float(w) for s, w in zip(symbols, clipped, strict=True)}, notes


def loss_breached(limits: RiskLimits, equity: float, day_start_equity: float, extra_loss: float = 0.0) -> bool:
    """True when ``equity`` has lost more than the daily loss limit since the day started at ``day_start_equity``,
    plus ``extra_loss`` dollars (granted by resumes): ``start - equity > start * limit + extra_loss``."""
    loss = limits.daily_loss_limit
    return loss is not None and 1.0 - equity / day_start_equity > loss + extra_loss / day_start_equity


def _check_extra_loss(extra_loss: float) -> float:
    if not _number(extra_loss) or extra_loss < 0:
        raise ValueError(f"extra_loss must be a finite number >= 0 (dollars), got {extra_loss!r}")
    return float(extra_loss)


def _check_equity(equity: float) -> float:
    if not _number(equity) and not isinstance(equity, np.floating):
        raise ValueError(f"equity must be a finite number, got {equity!r}")
    value = float(equity)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"equity must be a positive finite number, got {equity!r}")
    return value
