"""Parameter hot reload: the strategy in force, and a newer stored parameter version warmed up off the
loop (on the helper pool) and swapped in before the next decision."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import Engine

from openbell.broker.journal import event
from openbell.store.versions import latest_params
from openbell.strategy import Bar, InvalidParams, Strategy, build
from openbell.trading.context import LoopContext
from openbell.trading.minutes import bars_frame

Minutes = list[tuple[datetime, dict[str, Bar]]]  # today's decided minutes, in order


@dataclass
class Candidate:
    """A new parameter version's strategy, warmed up through ``warmed_through``."""

    strategy: Strategy
    version_id: int | None
    warmed_through: datetime | None


class ParamReload:
    """Holds ``strategy`` and its parameter ``version_id``; follows the stored versions unless the run
    fixed its parameters (``override``). A version the strategy refuses is recorded and skipped."""

    def __init__(
        self,
        ctx: LoopContext,
        *,
        engine: Engine,
        strategy_name: str,
        override: dict[str, Any] | None,
    ) -> None:
        self._threads = ctx.threads
        self._recorder = ctx.recorder
        self._report = ctx.report
        self._engine = engine
        self.d = ctx.d
        self.strategy_name = strategy_name
        self.override = override
        self._universe = ctx.universe
        self.strategy: Strategy | None = None
        self.version_id: int | None = None
        self.candidate: Candidate | None = None  # set on the loop, swapped in by the next decision
        self.warm: pd.DataFrame | None = None  # the warmup's bars, which a candidate warms up on too
        self._refused: set[int] = set()

    def load(self) -> Strategy:
        """Choose the strategy to start with (blocking: before the loop trades) and record its version."""
        self.strategy, self.version_id = self._initial()
        self._report.param_versions.append(self.version_id)
        return self.strategy

    def _initial(self) -> tuple[Strategy, int | None]:
        if self.override is not None:
            return build(self.strategy_name, self.override, self._universe), None  # InvalidParams: refuse
        pv = latest_params(self._engine, self.strategy_name)
        if pv is None:
            return build(self.strategy_name, None, self._universe), None
        try:
            return build(self.strategy_name, pv.params, self._universe), pv.id
        except InvalidParams as exc:
            self._refused.add(pv.id)
            self._report.params_refused += 1
            event(self._engine, self.d, "params_refused", {"version_id": pv.id, "error": str(exc)})
            return build(self.strategy_name, None, self._universe), None

    def check(self, snapshot: Minutes) -> None:
        """On a helper thread: build and warm up a newer stored version; it becomes the candidate."""
        pv = latest_params(self._engine, self.strategy_name)
        if pv is None or pv.id == self.version_id or pv.id in self._refused:
            return
        if self.candidate is not None and self.candidate.version_id == pv.id:
            return
        try:
            strategy = build(self.strategy_name, pv.params, self._universe)
        except InvalidParams as exc:
            self._refused.add(pv.id)
            self._report.params_refused += 1
            event(
                self._engine,
                self.d,
                "params_refused",
                {"version_id": pv.id, "error": str(exc), "incumbent": self.version_id},
            )
            return
        today = [b for _, bars in snapshot for b in bars.values()]
        frame = bars_frame(today)
        if self.warm is not None:  # a new frame either way: a strategy may add columns to what it is given
            frame = pd.concat([self.warm, frame], ignore_index=True) if today else self.warm.copy()
        strategy.warmup(frame)
        through = snapshot[-1][0] if snapshot else None
        candidate = Candidate(strategy, pv.id, through)
        self._threads.loop.call_soon_threadsafe(setattr, self, "candidate", candidate)

    def swap(self, today: Minutes) -> None:
        """On the loop, before a decision: the candidate catches up on today's minutes and takes over."""
        cand, self.candidate = self.candidate, None
        assert cand is not None
        for m, bars in today:
            if cand.warmed_through is None or m > cand.warmed_through:
                cand.strategy.on_minute(m, bars)
        previous, self.strategy, self.version_id = self.version_id, cand.strategy, cand.version_id
        self._report.param_versions.append(cand.version_id)
        self._recorder.event("params_reloaded", {"from": previous, "to": cand.version_id})
