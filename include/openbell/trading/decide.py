"""One minute's decision: strategy, risk limits, the orders out, then the record queued.

This is the hot path: nothing here waits for Postgres or the broker. Orders leave (through the
:class:`Dispatcher`) before the decision's rows are queued for the writer. The strategy is called through the
:class:`~openbell.trading.guard.StrategyGuard`: a minute it fails is skipped, positions kept.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from openbell.strategy import Bar, diagnostics
from openbell.trading.context import LoopContext
from openbell.trading.dispatch import Dispatcher
from openbell.trading.fence import Fencing
from openbell.trading.guard import StrategyGuard
from openbell.trading.minutes import MINUTE
from openbell.trading.portfolio import Portfolio
from openbell.trading.reload import Minutes, ParamReload


class Decider:
    """Decides minutes in order; ``seq`` is the next decision's sequence number, ``today`` the minutes
    decided so far (a reloaded strategy catches up on them)."""

    def __init__(
        self,
        ctx: LoopContext,
        portfolio: Portfolio,
        guard: StrategyGuard,
        params: ParamReload,
        dispatch: Dispatcher,
        fencing: Fencing,
        *,
        trade_until: datetime,
        on_stop: Callable[[str], None],
    ) -> None:
        self._portfolio = portfolio
        self._guard = guard
        self._gate = guard.gate
        self._params = params
        self._dispatcher = dispatch
        self._fencing = fencing
        self._recorder = ctx.recorder
        self._report = ctx.report
        self._trade_until = trade_until
        self._on_stop = on_stop  # the risk gate stopped and no loss stop holding yet: told before the orders leave
        self.seq = 0
        self.today: Minutes = []

    def decide(self, t: datetime, bars: dict[str, Bar], ready: float | None, *, trade: bool) -> None:
        """Decide minute ``t`` on its ``bars``; ``ready`` is when its last bar arrived (None: refilled),
        ``trade`` False when only the strategy's state may move (a minute decided while catching up)."""
        params, portfolio, report = self._params, self._portfolio, self._report
        assert params.strategy is not None
        if params.candidate is not None:
            params.swap(self.today)
        strategy = params.strategy
        for b in bars.values():
            portfolio.prices[b.symbol] = b.close
        equity = portfolio.equity()
        minute = self._guard.minute(strategy, t, bars, equity)
        seq = self.seq
        self.seq += 1
        self.today.append((t, bars))
        if ready is not None and report.first_live_decision_at is None:
            report.first_live_decision_at = datetime.now(UTC).isoformat()
        trade = trade and self._fencing.ok and self._fencing.out is None
        dispatch = self._dispatcher
        trade = trade and not dispatch.gate.liquidating and t + MINUTE < self._trade_until  # the liquidation ends it
        if self._gate.stopped and not dispatch.gate.risk.stop_holds:
            # the loss stop trips once: REDUCING, closing all, until flat, then HALTED; never asked again meanwhile
            self._on_stop(self._gate.stop_reason or "stopped for the day")
        if minute.skipped:  # no strategy order; a loss stop's closes still go (even its first): they need no target
            trade = trade and dispatch.gate.risk.flattening
        orders = dispatch.place(seq, minute.weights, minute.notes, ready, trade=trade)
        report.decisions += 1
        self._recorder.decision(t, seq, minute.targets, minute.weights, minute.notes, orders, equity, params.version_id,
                                diagnostics(strategy),
                                portfolio.cash, portfolio.gross_exposure())
