"""The trading day's steps as Airflow calls them: build the context, record the ledger, run the logic.

The step context is the workflow's composition root: it builds the Alpaca adapter's ports from the run's
connection and hands them to the trading core.

Each step takes Airflow's task context or a step context, returns a small JSON summary (it lands in
XCom, so it never holds credentials) and records its start and end in the step ledger, whatever the ending.
The steps that wait for a market time run in their own operators, :mod:`openbell.workflow.timed`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine

from openbell.adapters.alpaca.config import AlpacaConfig
from openbell.calendar import Session, et_date, run_session
from openbell.clock import MarketClock, clock_for
from openbell.params import RunParams
from openbell.store import ledger
from openbell.store.db import ensure_current, make_engine
from openbell.store.scope import shared_url
from openbell.workflow.hooks import AlpacaHook, StateDbHook

if TYPE_CHECKING:
    from openbell.ports import BrokerPort, MarketDataPort, Venue

log = logging.getLogger(__name__)


class SkipStep(Exception):
    """Raised by a step that has nothing to do for this run; carries the reason."""


@dataclass
class StepContext:
    """Everything a step needs, rebuilt from Airflow's context on every attempt."""

    session: Session
    params: RunParams
    run_id: str
    attempt: int
    run_type: str
    config_factory: Callable[[], AlpacaConfig]
    state_url: str = field(repr=False)

    @cached_property
    def config(self) -> AlpacaConfig:
        """The run's Alpaca settings; its key's request budget is kept in the state database (shared schema), so
        every machine and process trading the key draws on one budget."""
        return replace(self.config_factory(), budget_url=shared_url(self.state_url))

    @cached_property
    def venue(self) -> Venue:
        """The ports on the run's Alpaca connection (the one factory: :mod:`openbell.adapters.alpaca.venue`)."""
        from openbell.adapters.alpaca.venue import alpaca_venue

        return alpaca_venue(self.config)

    @property
    def broker(self) -> BrokerPort:
        return self.venue.broker

    @property
    def market_data(self) -> MarketDataPort:
        return self.venue.market_data

    @cached_property
    def engine(self) -> Engine:
        engine = make_engine(self.state_url)
        ensure_current(engine)
        return engine

    @cached_property
    def clock(self) -> MarketClock:
        return clock_for(self.config)

    def now(self) -> datetime:
        """Market time now."""
        return self.clock.now()

    @property
    def is_backfill(self) -> bool:
        return self.run_type == "backfill"

    def live_reason(self) -> str | None:
        """Why this run cannot act live (a backfill, or a session that is not now), else None."""
        if self.is_backfill:
            return "backfill run: live-only step skipped"
        now = self.now()
        if now >= self.session.close:
            return f"session {self.session.date} is over (market time {now.isoformat()})"
        if et_date(now) != self.session.date:
            return f"session {self.session.date} is not the market clock's today ({et_date(now)})"
        return None


def state_url() -> str:
    """The state database URL (:class:`~openbell.workflow.hooks.StateDbHook`: the ``openbell_db``
    connection, ``OPENBELL_DATABASE_URL`` only when that connection is not defined)."""
    return StateDbHook().get_uri()


def from_airflow(context: dict[str, Any]) -> StepContext:
    """The step context of the running task instance, on its DAG's account (its connection and its state)."""
    from openbell.workflow.accounts import account_state_url, run_account

    dag_run = context["dag_run"]
    ti = context["ti"]
    account = run_account(context)  # None: the default account
    return StepContext(
        session=run_session(dag_run),
        params=RunParams.from_mapping(dict(context.get("params") or {})),
        run_id=dag_run.run_id,
        attempt=int(getattr(ti, "try_number", 1) or 1),
        run_type=str(getattr(dag_run.run_type, "value", dag_run.run_type)),
        config_factory=(AlpacaHook() if account is None else AlpacaHook(account.conn_id)).get_conn,
        state_url=account_state_url(state_url(), account),
    )


@contextmanager
def recorded(ctx: StepContext, step: str) -> Iterator[ledger.StepRecord]:
    """Record ``step`` in the ledger; a :class:`SkipStep` becomes a skip with its reason in Airflow too."""
    from airflow.exceptions import AirflowSkipException

    skipped: str | None = None
    with ledger.step(ctx.engine, ctx.session.date, step, attempt=ctx.attempt, run_id=ctx.run_id) as record:
        try:
            yield record
        except SkipStep as exc:
            skipped = str(exc)
            record.status = "skipped"
            record.summary["reason"] = skipped
    if skipped is not None:
        raise AirflowSkipException(skipped)


def require_live(ctx: StepContext) -> None:
    """Skip the current step unless this run trades today's session now."""
    reason = ctx.live_reason()
    if reason:
        raise SkipStep(reason)


# -- the steps -------------------------------------------------------------------------------------


def wait_for_open(context: dict[str, Any]) -> dict[str, Any]:
    """Record that the run's opening time was reached (the wait itself is deferred to the triggerer)."""
    ctx = from_airflow(context)
    with recorded(ctx, "wait_for_open") as record:
        record.summary.update({"open": ctx.session.open.isoformat(), "market_time": ctx.now().isoformat()})
    return record.summary


def download(context: dict[str, Any]) -> dict[str, Any]:
    """Store the last ``history_days`` of 1-minute bars up to now (a past session: up to its close)."""
    from openbell import marketdata

    ctx = from_airflow(context)
    with recorded(ctx, "download") as record:
        now = ctx.now()
        if now < ctx.session.open:
            raise SkipStep(f"session {ctx.session.date} has not opened yet (market time {now.isoformat()})")
        until = now if ctx.live_reason() is None else ctx.session.close
        record.summary.update(
            marketdata.download(ctx.market_data, ctx.broker, ctx.engine, ctx.session, until, ctx.params.universe,
                                days=ctx.params.history_days)
        )
    return record.summary


def todays_bars(context: dict[str, Any]) -> dict[str, Any]:
    """Store today's bars from the open to now and audit every completed minute."""
    from openbell import marketdata

    ctx = from_airflow(context)
    with recorded(ctx, "todays_bars") as record:
        require_live(ctx)
        record.summary.update(
            marketdata.todays_bars(ctx.market_data, ctx.engine, ctx.session, ctx.now(), ctx.params.universe)
        )
    return record.summary


def reconcile(context: dict[str, Any]) -> dict[str, Any]:
    """Take the broker's positions and open orders into the position book."""
    from openbell import broker

    ctx = from_airflow(context)
    with recorded(ctx, "reconcile") as record:
        require_live(ctx)
        record.summary.update(
            broker.reconcile(ctx.broker, ctx.engine, ctx.session.date, universe=ctx.params.universe).as_dict()
        )
    return record.summary


def live_trading(context: dict[str, Any]) -> dict[str, Any]:
    """Trade the session until its close; every attempt resumes from Postgres and the broker. The run's
    parameters go into the step's summary (``run_params``): the day's report replays the day with them."""
    from openbell.strategy.risk import RiskLimits
    from openbell.trading import SessionOver, run_trading_attempt

    ctx = from_airflow(context)
    p = ctx.params
    with recorded(ctx, "live_trading") as record:
        require_live(ctx)
        record.summary["run_params"] = p.model_dump(mode="json")  # what the day's report replays
        try:
            report = run_trading_attempt(
                ctx.venue, ctx.engine, ctx.session.date, clock=ctx.clock, strategy_name=p.strategy,
                params_override=p.strategy_params,
                risk=RiskLimits(max_weight=p.max_weight, max_gross=p.max_gross,
                                daily_loss_limit=p.daily_loss_limit, allow_short=p.allow_short),
                universe=p.universe, min_notional=p.min_notional, rebalance_band=p.rebalance_band,
                warmup_sessions=p.warmup_sessions,
                limits=p.order_limits(), fractional=p.fractional, order_type=p.order_type,
                limit_collar=p.limit_collar, strategy_budget_seconds=p.strategy_budget_seconds,
                strategy_failures_to_reduce=p.strategy_failures_to_reduce,
                trade_until=ctx.session.close - timedelta(minutes=p.liquidate_minutes_before_close),
            )
        except SessionOver as exc:
            raise SkipStep(str(exc)) from exc
        record.summary.update(report.as_dict())
    return record.summary


def midday_optimize(context: dict[str, Any]) -> dict[str, Any]:
    """Search parameters on recent sessions and today so far; store a version only if it wins out of sample."""
    from openbell import midday

    ctx = from_airflow(context)
    with recorded(ctx, "midday_optimize") as record:
        require_live(ctx)
        record.summary.update(midday.optimize_session(ctx.engine, ctx.session, ctx.clock, ctx.params))
    return record.summary


def liquidation_is_late(session: Session, now: datetime, *, is_backfill: bool) -> bool:
    """Whether a liquidation starting at market time ``now`` is late: at or after its session's close, in a
    run that is not a backfill. A late liquidation asks the broker rather than skipping."""
    return not is_backfill and now >= session.close


def prepare_liquidation(ctx: StepContext) -> None:
    """Everything the liquidation needs that costs time, done before its market time: its modules,
    SQLAlchemy's mapper configuration (the first ORM write of a process configures every mapped class,
    Airflow's too, importing hundreds of modules: 0.7-2 wall seconds, 1.5-4 market minutes at 120x), the
    state database (and its schema check), the clock's mapping, the broker and market-data clients and a
    first broker request (its connection then stays open). A failure here is left to the step itself."""
    from sqlalchemy.orm import configure_mappers

    import openbell.broker.flatten  # noqa: F401 - the liquidation's modules, imported before its time

    try:
        configure_mappers()
        ctx.engine  # noqa: B018 - the cached engine and its schema check
        ctx.clock.now()
        ctx.market_data  # noqa: B018
        ctx.broker.positions()
    except Exception as exc:
        log.warning("preparing the liquidation failed (the step tries again at its time): %s", exc)


def run_eod_liquidate(ctx: StepContext) -> dict[str, Any]:
    """Close everything before the bell and prove the account flat; fails loudly if it is not.

    Started after the close (see :func:`liquidation_is_late`), it never skips while the broker holds
    positions or open orders: it acts and reports itself late. Else it liquidates and proves the account
    flat (:func:`~openbell.broker.flatten.flatten_and_prove`: the second pass starts a market minute after
    the first, :data:`~openbell.broker.flatten.PROOF_MARGIN` before the close at the latest). A close order
    the broker holds (a halted symbol) is waited for until the close; past it the step fails naming what is
    held and why. Every deadline is the session's close (13:00 ET on a half day).
    """
    from openbell.broker.flatten import PROOF_MARGIN, flatten_and_prove, liquidation_incomplete

    with recorded(ctx, "eod_liquidate") as record:
        now = ctx.now()
        record.summary["started_at"] = now.isoformat()
        if liquidation_is_late(ctx.session, now, is_backfill=ctx.is_backfill):
            _liquidate_late(ctx, record.summary, now)
            return record.summary
        require_live(ctx)
        result = flatten_and_prove(ctx.broker, ctx.engine, ctx.session.date, ctx.clock, ctx.session.close,
                                   market_data=ctx.market_data, proof_margin=PROOF_MARGIN)
        record.summary["first_pass"] = result.first.as_dict()
        if result.proof is not None:
            record.summary.update(result.proof.as_dict())
        record.summary["held"] = result.held
        if not result.flat:
            liquidation_incomplete(ctx.engine, ctx.session.date, result.report, record.summary)
    return record.summary


def _liquidate_late(ctx: StepContext, summary: dict[str, Any], now: datetime) -> None:
    """After the close, by what the broker holds. Nothing: the step records the account flat on the
    session's day (nothing trades after the close) and skips with the reason on a later day. Anything:
    it records the lateness, liquidates once and fails unless flat (market orders placed after the
    close wait at the broker for the next open)."""
    from openbell import broker
    from openbell.broker.journal import event
    from openbell.broker.liquidate import holdings

    positions, open_orders = holdings(ctx.broker)
    if not positions and not open_orders:
        if et_date(now) != ctx.session.date:
            raise SkipStep(f"{ctx.live_reason()}; the broker holds no positions and no open orders")
        summary.update(broker.liquidate(ctx.broker, ctx.engine, ctx.session.date, ctx.clock, now).as_dict())
        return
    summary["late"] = True
    log.error("session %s: liquidation starts late at market time %s; the broker holds %s and %d open orders",
              ctx.session.date, now.isoformat(), positions, open_orders)
    event(ctx.engine, ctx.session.date, "liquidation_late",
          {"market_time": now.isoformat(), "positions": positions, "open_orders": open_orders})
    report = broker.liquidate(ctx.broker, ctx.engine, ctx.session.date, ctx.clock, now)
    summary.update(report.as_dict())
    if not report.flat:
        queued = (f"{report.open_orders_left} close orders are queued at the broker until the next open"
                  if report.open_orders_left else "no close order is working: close them by hand")
        raise RuntimeError(f"late liquidation of session {ctx.session.date} at {report.finished_at}: "
                           f"positions remain {report.positions_left}; {queued}")
