"""The strategy's side of one minute: ``on_minute`` within its time budget, its output checked, then the risk
limits (:class:`StrategyGuard`).

A failure (the call raised, returned after its budget of market time, or returned what
:mod:`~openbell.trading.targets_check` refuses) skips the minute: no target reaches the dispatcher, so nothing is
bought or sold for the strategy and every position is kept (a loss stop's closes still go: they need no target).
The daily loss limit is still checked on the equity. Each failure is noted in the decision, counted in the
attempt's report (``strategy_failures``, by kind) and logged, the first of each kind with its reason. After
``reduce_after`` failures in a row the session is moved to REDUCING (``on_reduce``); a good minute, or a resume
of the session, starts the count over.

A call that never returns cannot be stopped safely in Python and is not tried: it holds the live loop, so no
further minute is decided and nothing more of the strategy's leaves; the end-of-day liquidation, a separate
task, still flattens the account.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from openbell.clock import cached_now
from openbell.risk.owner import RiskChange
from openbell.risk.state import RiskState
from openbell.strategy import Bar, RiskGate, Strategy
from openbell.trading.alerting import et_minute
from openbell.trading.context import LoopContext
from openbell.trading.targets_check import TargetsRefused, check_targets

log = logging.getLogger(__name__)

DEFAULT_BUDGET_SECONDS = 20.0  # market seconds an on_minute call may take: a third of the minute it decides
DEFAULT_REDUCE_AFTER = 5  # failures in a row that move the session to REDUCING
_REASON_CHARS = 300


@dataclass(frozen=True)
class StrategyFailure:
    """One failed call: ``kind`` (``raised``, ``late`` or a refusal's kind) and a one-line ``reason``."""

    kind: str
    reason: str
    error: BaseException | None = None  # what the call raised, logged with its traceback

    @property
    def note(self) -> str:
        """The decision's note."""
        return f"strategy failed ({self.kind}): {self.reason}; minute skipped, positions kept"


@dataclass(frozen=True)
class MinuteWeights:
    """What one minute trades: the strategy's ``targets``, the ``weights`` within the risk limits and the notes on
    both; ``skipped`` when nothing may trade on them (a failure, or the risk limits' own)."""

    targets: Mapping[str, float]
    weights: dict[str, float]
    notes: list[str]
    skipped: bool = False


class StrategyGuard:
    """Calls the strategy for each minute within ``budget`` (market time, as the loop's clock measures it), checks
    what it returns against ``gate``'s limits, then applies them; ``on_reduce(reason)`` is asked to move the
    session to REDUCING after ``reduce_after`` failures in a row."""

    def __init__(self, ctx: LoopContext, gate: RiskGate, *, budget: timedelta, reduce_after: int,
                 on_reduce: Callable[[str], None]) -> None:
        if not budget > timedelta(0):
            raise ValueError(f"the strategy's time budget must be > 0, got {budget}")
        if reduce_after < 1:
            raise ValueError(f"reduce_after must be >= 1, got {reduce_after}")
        self.gate = gate
        self.budget = budget
        self.reduce_after = reduce_after
        self._on_reduce = on_reduce
        self._clock = ctx.clock
        self._report = ctx.report
        self._universe = frozenset(ctx.universe)
        self._logged: set[str] = set()  # kinds logged at ERROR this attempt; later ones are counted
        self.in_a_row = 0

    def minute(self, strategy: Strategy, t: datetime, bars: Mapping[str, Bar], equity: float) -> MinuteWeights:
        """The weights minute ``t`` may trade on ``bars`` at ``equity``."""
        outcome = self._call(strategy, t, bars)
        if isinstance(outcome, StrategyFailure):
            notes = [outcome.note]
            try:
                notes += self.gate.apply({}, equity)[1]  # no target, but the daily loss limit is still checked
            except Exception as exc:
                notes.append(f"risk limits failed: {exc}")
            self._failed(outcome, t)
            return MinuteWeights({}, {}, notes, skipped=True)
        self.in_a_row = 0
        try:
            weights, notes = self.gate.apply(outcome, equity)
        except Exception as exc:  # the risk limits failing (a bad equity) skip this minute's trading, loudly
            log.exception("the risk limits at %s failed", t)
            return MinuteWeights(outcome, {}, [f"decision failed: {exc}"], skipped=True)
        return MinuteWeights(outcome, weights, notes)

    def risk_changed(self, change: RiskChange) -> None:
        """A change of the risk state: a resume (ACTIVE) starts the count of failures over."""
        if change.state is RiskState.ACTIVE:
            self.in_a_row = 0

    def _call(self, strategy: Strategy, t: datetime, bars: Mapping[str, Bar]) -> dict[str, float] | StrategyFailure:
        """``on_minute``'s checked targets, or why they are not to be traded."""
        started = cached_now(self._clock)
        try:
            raw = strategy.on_minute(t, bars)
        except Exception as exc:
            return StrategyFailure("raised", _one_line(f"on_minute raised {type(exc).__name__}: {exc}"), exc)
        took = (cached_now(self._clock) - started).total_seconds()
        if took > self.budget.total_seconds():
            return StrategyFailure("late", f"on_minute took {took:.1f} market seconds, over its budget of "
                                           f"{self.budget.total_seconds():g}: its targets are discarded")
        try:
            return check_targets(raw, self._universe, self.gate.limits)
        except TargetsRefused as exc:
            return StrategyFailure(exc.kind, _one_line(exc.reason))

    def _failed(self, failure: StrategyFailure, t: datetime) -> None:
        """Counted, logged (the first of its kind with its reason), and after too many in a row the session
        reduced, unless the daily loss limit stopped it (the loss stop trips and closes instead)."""
        report = self._report
        self.in_a_row += 1
        report.strategy_failures += 1
        report.strategy_failures_by_kind[failure.kind] = report.strategy_failures_by_kind.get(failure.kind, 0) + 1
        if failure.kind not in self._logged:
            self._logged.add(failure.kind)
            log.error("the strategy failed at %s (%s): %s; minute skipped, positions kept (logged once per kind; "
                      "later ones are counted)", t.isoformat(), failure.kind, failure.reason, exc_info=failure.error)
        else:
            log.debug("the strategy failed at %s (%s): %s", t.isoformat(), failure.kind, failure.reason)
        if self.in_a_row >= self.reduce_after and not self.gate.stopped:
            minutes = f"{self.in_a_row} minutes in a row" if self.in_a_row > 1 else "1 minute"
            self._on_reduce(f"the strategy failed {minutes}, the last the minute of {et_minute(t)} "
                            f"({failure.kind}: {failure.reason})")


def _one_line(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= _REASON_CHARS else line[: _REASON_CHARS - 3] + "..."
