"""Chores between minutes, on the helper pool: risk logs, garbage collection, the session lock, the
simulator clock's mapping, the session phase, parameter reloads, order lookups and the broker sync.

Started ``HOUSEKEEPING_DELAY`` after a decision so it does not compete with the orders going out; at
most one round runs at a time. The automatic garbage collector is off while trading (:func:`pause_gc`):
collections happen here.
"""

from __future__ import annotations

import gc
import logging
import math
import time
from collections.abc import Callable

from sqlalchemy import Engine

from openbell.heap import release_free_memory
from openbell.store.sessions import get_phase
from openbell.strategy import RiskGate
from openbell.trading.context import LoopContext
from openbell.trading.fence import Fencing
from openbell.trading.phasewatch import WINDING_DOWN
from openbell.trading.reload import Minutes, ParamReload
from openbell.trading.sync import BrokerSync

log = logging.getLogger(__name__)

HOUSEKEEPING_DELAY = 0.02  # wall seconds after a decision
FULL_GC_EVERY = 30  # decisions between full collections (the others collect the young generations)
CLOCK_REFRESH = 4.0  # wall seconds; a simulator clock goes stale (and is read on the loop) after 5 s


def pause_gc() -> bool:
    """Move what preparation built out of the collector's way and collect only between minutes: a full
    collection of that heap stops every thread for tens of ms. What preparation freed goes back to the system.
    Returns whether automatic collection was on."""
    was_on = gc.isenabled()
    gc.collect()
    gc.freeze()
    gc.disable()
    release_free_memory()
    return was_on


class Housekeeping:
    """One round of chores after each decision (``tick``), when the previous round is done.

    ``on_winding_down(phase)`` is called on the loop when Postgres says the session is liquidating or
    closed; ``params`` is None when the run fixed its parameters (no reload).
    """

    def __init__(
        self,
        ctx: LoopContext,
        engine: Engine,
        *,
        gate: RiskGate,
        fencing: Fencing,
        params: ParamReload | None,
        sync: BrokerSync,
        on_winding_down: Callable[[str], None],
        on_round: Callable[[], None] | None = None,
    ) -> None:
        self._threads = ctx.threads
        self._report = ctx.report
        self._gate = gate
        self._fencing = fencing
        self._clock = ctx.clock
        self._engine = engine
        self.d = ctx.d
        self._params = params
        self._sync = sync
        self._on_winding_down = on_winding_down
        self._on_round = on_round  # last in every round (the trading metrics); must not raise
        self._busy = False
        self._fencing_busy = False
        self._clock_read = -math.inf

    def tick(self, seq: int, today: Minutes) -> None:
        """On the loop, after a decision: check the session lock, and schedule a round unless the last one is
        still running (``seq`` is the next decision's number). The lock is checked every minute whatever the
        round: a lock another attempt took stops trading at the next minute, however slow the chores."""
        if not self._fencing_busy:
            self._fencing_busy = True  # before the submit: the check may be done before it returns
            if not self._threads.submit(self._check_fence):
                self._fencing_busy = False
        if self._busy:
            return
        self._busy = True
        snapshot = list(today)
        sync = self._sync.due(self._report.decisions)
        stale = self._sync.stale(seq)
        # started a moment later so it does not compete with the orders going out for a CPU
        self._threads.loop.call_later(HOUSEKEEPING_DELAY, self._start, snapshot, sync, stale)

    def _check_fence(self) -> None:
        try:
            self._fencing.check()
        except Exception as exc:  # the check failing must not stop trading; the next minute checks again
            log.warning("checking the session lock failed: %s", type(exc).__name__)
        finally:
            self._fencing_busy = False

    def _start(self, snapshot: Minutes, sync: bool, stale: list[str]) -> None:
        if not self._threads.submit(self._run, snapshot, sync, stale):
            self._busy = False

    def _run(self, snapshot: Minutes, sync: bool, stale: list[str]) -> None:
        try:
            self._gate.flush_logs()
            # the automatic collector is off while trading: collect here, between minutes
            gc.collect(2 if self._report.decisions % FULL_GC_EVERY == 0 else 1)
            self._refresh_clock()
            phase = get_phase(self._engine, self.d)
            if phase in WINDING_DOWN:
                self._threads.loop.call_soon_threadsafe(self._on_winding_down, phase)
            if self._params is not None:
                self._params.check(snapshot)
            if stale:
                self._sync.poll_orders(stale)
            if sync:
                self._sync.sync_account()
        except Exception as exc:  # a chore failing must not stop trading
            log.warning("housekeeping failed: %s", self._sync.describe(exc))
        finally:
            if self._on_round is not None:
                self._on_round()
            self._busy = False

    def _refresh_clock(self) -> None:
        """Read a simulator's clock mapping here, between minutes, before it goes stale: a refresh
        costs tens of milliseconds of CPU that the event loop would otherwise pay mid-decision."""
        refresh = getattr(self._clock, "refresh", None)
        if refresh is None or time.monotonic() - self._clock_read < CLOCK_REFRESH:
            return
        self._clock_read = time.monotonic()
        try:
            refresh()
        except Exception as exc:  # the loop's own reads retry and report it
            log.debug("clock refresh failed: %s", self._sync.describe(exc))
