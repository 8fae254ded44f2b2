"""Airflow operators for market-time waits."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Literal, get_args

from airflow.sdk import BaseOperator, RetryDecision, RetryPolicy

from openbell import calendar
from openbell.adapters.alpaca.config import CONN_ID
from openbell.calendar import Session
from openbell.clock import MarketClock, clock_for
from openbell.workflow.hooks import AlpacaHook
from openbell.workflow.triggers import MarketTimeTrigger, parse_market_time

TargetAnchor = Literal["open", "close", "midday"]


def target_time(session: Session, anchor: TargetAnchor, offset_minutes: float = 0.0) -> datetime:
    """The market time ``offset_minutes`` after ``anchor`` of ``session`` (UTC).

    ``open``/``close`` are the session's bell times (13:00 ET close on half days); ``midday`` is
    14:30 ET, or 90 minutes before an early close.
    """
    if anchor == "midday":
        return calendar.midday(session) + timedelta(minutes=offset_minutes)
    return calendar.at_offset(session, anchor, offset_minutes)


class WaitForMarketTime(BaseOperator):
    """Wait, deferred, until a market time of the run's session; returns that time as ISO.

    The offset is ``offset_minutes``, or the run's param ``offset_param`` times ``offset_scale`` (so a
    manual trigger can move the time). The trigger fires ``lead_seconds`` of wall time early and the
    task does the last stretch itself, so task start-up latency does not cost market minutes when the
    simulator runs fast.
    """

    template_fields: Sequence[str] = ()
    ui_color = "#d6eaf8"

    def __init__(
        self,
        *,
        anchor: TargetAnchor,
        offset_minutes: float = 0.0,
        offset_param: str | None = None,
        offset_scale: float = 1.0,
        lead_seconds: float = 10.0,
        conn_id: str = CONN_ID,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if anchor not in get_args(TargetAnchor):
            raise ValueError(f"anchor must be one of {get_args(TargetAnchor)}, got {anchor!r}")
        if not math.isfinite(offset_minutes):
            raise ValueError(f"offset_minutes must be finite, got {offset_minutes}")
        if not (math.isfinite(lead_seconds) and lead_seconds >= 0):
            raise ValueError(f"lead_seconds must be a finite number >= 0, got {lead_seconds}")
        self.anchor: TargetAnchor = anchor
        self.offset_minutes = float(offset_minutes)
        self.offset_param = offset_param
        self.offset_scale = float(offset_scale)
        self.lead_seconds = float(lead_seconds)
        self.conn_id = conn_id

    def _clock(self) -> MarketClock:
        return clock_for(AlpacaHook(alpaca_conn_id=self.conn_id).get_conn())

    def target_for(self, context: Any) -> datetime:
        """The target market time of the run in ``context``."""
        session = calendar.run_session(context["dag_run"])
        offset = self.offset_minutes
        if self.offset_param:
            offset = float(context["params"][self.offset_param]) * self.offset_scale
        return target_time(session, self.anchor, offset)

    def execute(self, context: Any) -> str:
        target = self.target_for(context)
        clock = self._clock()
        now = clock.now()
        if now >= target:
            self.log.info("market time %s already past %s; not waiting", now.isoformat(), target.isoformat())
            return target.isoformat()
        self.log.info("deferring until market time %s (market now %s)", target.isoformat(), now.isoformat())
        self.defer(
            trigger=MarketTimeTrigger(
                target=target.isoformat(), clock=clock.spec(), lead_seconds=self.lead_seconds
            ),
            method_name="execute_complete",
        )

    def prepare(self, context: Any) -> None:
        """Called after the trigger fired and before the last stretch of the wait: work that must not
        cost market time after the target (building clients, connections). Nothing by default."""

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> str:
        if not event or "target" not in event:
            raise ValueError(f"unexpected trigger event {event!r}")
        target = parse_market_time(event["target"])
        self.prepare(context)
        self._clock().sleep_until(target)
        self.log.info("market time %s reached", target.isoformat())
        return target.isoformat()


def clock_speed(clock: MarketClock) -> float:
    """Market seconds per wall second: 1 for the wall clock, the simulator's published speed otherwise."""
    clock.now()  # a simulator clock reads its mapping
    mapping = getattr(clock, "mapping", None)
    return 1.0 if mapping is None else float(mapping.speed)


class MarketTimeRetry(RetryPolicy):
    """Space a failed attempt's retry by ``market_seconds`` of market time, not wall time.

    Airflow counts ``retry_delay`` on the wall; against a simulator running at 120x, 5 wall seconds are
    10 market minutes. This policy asks the run's market clock for its speed and returns the wall delay
    that equals ``market_seconds`` (at least ``min_seconds``). With ``until_close`` there is no retry once the
    run's session has closed: the failure stands, and is alerted, instead of acting after the bell. A process
    killed outright, or one that could not start, never reaches a policy: the task's ``retry_delay`` applies
    then, so keep that short too.
    """

    def __init__(self, market_seconds: float = 5.0, *, min_seconds: float = 0.0, until_close: bool = False,
                 conn_id: str = CONN_ID) -> None:
        if not (math.isfinite(market_seconds) and market_seconds >= 0 and math.isfinite(min_seconds)
                and min_seconds >= 0):
            raise ValueError(f"market_seconds and min_seconds must be finite and >= 0, got "
                             f"{market_seconds}, {min_seconds}")
        self.market_seconds = float(market_seconds)
        self.min_seconds = float(min_seconds)
        self.until_close = bool(until_close)
        self.conn_id = conn_id

    def wall_delay(self, speed: float) -> timedelta:
        """The wall delay equal to ``market_seconds`` at ``speed`` market seconds per wall second."""
        if not (math.isfinite(speed) and speed > 0):
            raise ValueError(f"the market clock's speed must be finite and > 0, got {speed}")
        return timedelta(seconds=max(self.min_seconds, self.market_seconds / speed))

    def evaluate(self, exception: BaseException, try_number: int, max_tries: int,
                 context: Any = None) -> RetryDecision:
        try:
            clock = clock_for(AlpacaHook(alpaca_conn_id=self.conn_id).get_conn())
            speed = clock_speed(clock)
            delay = self.wall_delay(speed)
            if self.until_close and context is not None:
                close = calendar.run_session(context["dag_run"]).close
                if clock.now() >= close:
                    return RetryDecision.fail(f"no retry after the close ({close.astimezone(calendar.ET):%H:%M} ET)")
        except Exception:  # no clock to ask: the task's own retry_delay
            return RetryDecision.default()
        return RetryDecision.retry(delay, reason=f"retry in {self.market_seconds:g} market seconds "
                                                 f"({delay.total_seconds():.3f} wall seconds at {speed:g}x)")

    def serialize(self) -> dict[str, Any]:
        return {"market_seconds": self.market_seconds, "min_seconds": self.min_seconds,
                "until_close": self.until_close, "conn_id": self.conn_id}

    @classmethod
    def deserialize(cls, data: dict[str, Any]) -> MarketTimeRetry:
        return cls(float(data["market_seconds"]), min_seconds=float(data.get("min_seconds", 0.0)),
                   until_close=bool(data.get("until_close", False)), conn_id=str(data.get("conn_id", CONN_ID)))
