"""Flatten the account and prove it flat: the liquidation (:func:`~openbell.broker.liquidate.liquidate`) and,
when it ends flat, a second pass a little later that must find the account still flat.

The second pass closes an order that was in flight when the first began (sent just before the live loop
stopped opening). It starts one market minute after the first pass ended, never past the deadline (less a
margin when asked, so that what it finds can still be closed before the close). A first pass that is not
flat is not followed by a second one: it ran until its deadline (at the close, a second pass would only
queue orders for the next open).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, NoReturn

from sqlalchemy import Engine

from openbell.broker.journal import event
from openbell.broker.liquidate import LiquidationReport, liquidate
from openbell.clock import MarketClock
from openbell.ports import BrokerPort, MarketDataPort

log = logging.getLogger(__name__)

# The second pass starts this long (market time) after the first one ended.
PROVE_AFTER = timedelta(minutes=1)
# The end-of-day liquidation's second pass starts at least this long before the close, so that an order that
# was in flight can still be closed (see :func:`proof_time`).
PROOF_MARGIN = timedelta(seconds=15)


@dataclass
class FlattenResult:
    """Both passes of :func:`flatten_and_prove`: ``proof`` is None when the first pass did not end flat."""

    first: LiquidationReport
    proof: LiquidationReport | None = None

    @property
    def report(self) -> LiquidationReport:
        """The last pass: the account as the broker left it."""
        return self.proof if self.proof is not None else self.first

    @property
    def flat(self) -> bool:
        """Whether the account was proven flat: both passes found no position and no open order."""
        return self.proof is not None and self.proof.flat

    @property
    def held(self) -> dict[str, dict[str, Any]]:
        """The close orders the broker held in either pass (the second pass's word last)."""
        return {**self.first.held, **(self.proof.held if self.proof is not None else {})}


def proof_time(now: datetime, deadline: datetime, *, after: timedelta = PROVE_AFTER,
               margin: timedelta = timedelta(0)) -> datetime:
    """When the second pass starts, the first having ended at market time ``now``: ``after`` later, but
    ``margin`` before ``deadline`` at the latest, and never before ``now``."""
    return max(now, min(now + after, deadline - margin))


def flatten_and_prove(
    broker: BrokerPort,
    engine: Engine,
    session_date: date,
    clock: MarketClock,
    deadline: datetime,
    *,
    market_data: MarketDataPort | None = None,
    mark_phase: bool = True,
    prove_after: timedelta = PROVE_AFTER,
    proof_margin: timedelta = timedelta(0),
    window: timedelta | None = None,
) -> FlattenResult:
    """Liquidate before ``deadline`` (market time) and, when the account is flat, prove it with a second
    pass at :func:`proof_time` (``prove_after`` later, ``proof_margin`` before ``deadline`` at the latest).

    ``window``: each pass also ends this long after it starts (the earlier of the two), e.g. a flatten
    during the session that should not wait until the close. ``market_data`` and ``mark_phase`` are the
    liquidation's (see :func:`~openbell.broker.liquidate.liquidate`). The result holds both passes' reports
    and whether the account was proven flat; a failure is left to the caller (:func:`liquidation_incomplete`).
    """

    def run() -> LiquidationReport:
        until = deadline if window is None else min(clock.now() + window, deadline)
        return liquidate(broker, engine, session_date, clock, until, market_data, mark_phase=mark_phase)

    first = run()
    if not first.flat:  # the deadline came first (at the close a second pass would only queue orders for the next open)
        return FlattenResult(first)
    clock.sleep_until(proof_time(clock.now(), deadline, after=prove_after, margin=proof_margin))
    return FlattenResult(first, run())


def liquidation_incomplete(engine: Engine, session_date: date, report: LiquidationReport,
                           summary: dict[str, Any] | None = None) -> NoReturn:
    """A liquidation that ended with positions or orders left: journal it (a ``liquidation_incomplete``
    event), note it in the step's ``summary`` when given (``flat`` False, ``positions_left``,
    ``open_orders_left``) and raise ``RuntimeError`` naming what is left and what the broker holds, and why."""
    held = report.still_held
    if summary is not None:
        summary.update(flat=False, positions_left=report.positions_left, open_orders_left=report.open_orders_left)
    event(engine, session_date, "liquidation_incomplete",
          {"market_time": report.finished_at, "positions": report.positions_left,
           "open_orders": report.open_orders_left, "held": held})
    because = "; ".join(f"{s} {h['qty']:g} held by the broker since {h['since']} ({h['reason']})"
                        for s, h in sorted(held.items()))
    log.error("session %s: liquidation incomplete at %s: positions %s, open orders %d", session_date,
              report.finished_at, report.positions_left, report.open_orders_left)
    raise RuntimeError(
        f"account not flat at {report.finished_at}: positions {report.positions_left}, "
        f"open orders {report.open_orders_left}" + (f"; {because}" if because else "")
    )
