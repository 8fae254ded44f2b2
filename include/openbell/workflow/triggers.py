"""Airflow triggers that wait on market time (the simulator's clock or the wall) in the triggerer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from openbell.clock import MarketClock, clock_from_spec


def parse_market_time(value: str | datetime) -> datetime:
    """An aware datetime from an ISO string (or a datetime); naive values are refused."""
    t = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"market time must carry a UTC offset, got {value!r}")
    return t


class MarketTimeTrigger(BaseTrigger):
    """Fire when market time reaches ``target``, ``lead_seconds`` of wall time early.

    The wait sleeps in chunks and re-reads the simulator's mapping between them, so a restarted or
    re-speeded simulator is followed; an unreachable simulator is retried with a log line, never
    crashing the triggerer. No state beyond the constructor arguments.
    """

    def __init__(self, target: str, clock: dict[str, Any], lead_seconds: float = 0.0) -> None:
        super().__init__()
        parsed = parse_market_time(target)
        if lead_seconds < 0:
            raise ValueError(f"lead_seconds must be >= 0, got {lead_seconds}")
        clock_from_spec(clock)  # validate early, in the task, not in the triggerer
        self.target = parsed.isoformat()
        self.clock = dict(clock)
        self.lead_seconds = float(lead_seconds)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",  # openbell.workflow.triggers.MarketTimeTrigger
            {"target": self.target, "clock": self.clock, "lead_seconds": self.lead_seconds},
        )

    def _clock(self) -> MarketClock:
        return clock_from_spec(self.clock)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        clock = self._clock()
        target = parse_market_time(self.target)
        self.log.info("waiting for market time %s (lead %.1fs) on %r", self.target, self.lead_seconds, clock)
        await clock.wait_until(target, self.lead_seconds)
        now = await clock.anow()
        self.log.info("market time %s reached (now %s)", self.target, now.isoformat())
        yield TriggerEvent({"target": self.target, "market_time": now.isoformat()})
