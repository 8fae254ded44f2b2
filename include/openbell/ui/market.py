"""The market clock and the broker's positions as seen from the api-server.

Credentials come from the account's Airflow connection (``alpaca_default`` for the default account) and stay
in this process: only market times, symbols and quantities are handed on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC
from typing import Any

from openbell.adapters.alpaca.config import AlpacaConfig
from openbell.calendar import ET
from openbell.clock import MarketClock, SimClock, clock_for

log = logging.getLogger(__name__)


class Market:
    """Lazily built from an Airflow connection; every failure reads as "unknown", never as an error."""

    def __init__(self, loader: Callable[[], AlpacaConfig] = AlpacaConfig.from_airflow,
                 retry_seconds: float = 30.0) -> None:
        self._loader = loader
        self._config: AlpacaConfig | None = None
        self._clock: MarketClock | None = None
        self._failed_at = -float("inf")
        self._retry_after = retry_seconds

    async def _ready(self) -> bool:
        if self._config is not None:
            return True
        if time.monotonic() - self._failed_at < self._retry_after:
            return False
        try:
            self._config = await asyncio.to_thread(self._loader)
            self._clock = clock_for(self._config)
        except Exception as exc:
            self._failed_at = time.monotonic()
            log.info("openbell UI: no broker connection (%s)", type(exc).__name__)
            return False
        return True

    async def clock(self) -> dict[str, Any]:
        """``{market_time, speed, today}`` or ``{}`` when no clock can be read."""
        if not await self._ready():
            return {}
        clock = self._clock
        try:
            if isinstance(clock, SimClock):
                now = await clock.anow()
                speed = clock.mapping.speed if clock.mapping else 1.0
            else:
                assert clock is not None
                now, speed = clock.now(), 1.0
        except Exception:
            return {}
        return {"market_time": now.astimezone(UTC), "speed": speed, "today": now.astimezone(ET).date()}

    async def positions(self) -> dict[str, float] | None:
        """The broker's positions (signed quantities), or None when the broker cannot be asked."""
        if not await self._ready():
            return None
        assert self._config is not None
        config = self._config

        def ask() -> dict[str, float]:
            from openbell.adapters.alpaca.venue import alpaca_venue

            return {p.symbol: p.qty for p in alpaca_venue(config, attempts=1).broker.positions()}

        try:
            return await asyncio.to_thread(ask)
        except Exception as exc:
            log.info("openbell UI: broker positions unavailable (%s)", type(exc).__name__)
            return None


async def poll_broker(market: Market, hub: Any, every: float = 5.0, market_seconds: float = 30.0,
                      schema: str | None = None) -> None:
    """Broadcast the broker's positions to viewers of the market clock's today (of ``schema``'s account, when
    given), every ``every`` s of wall time, or more often when a simulator's clock runs fast (at most
    ``market_seconds`` of market time apart, at least half a second)."""
    pause = 0.5  # the first look soon after start: until then viewers see the reconcile snapshot
    while True:
        await asyncio.sleep(pause)
        clock = await market.clock()
        pause = max(0.5, min(every, market_seconds / max(float(clock.get("speed") or 1.0), 1e-9)))
        today = clock.get("today")
        if today is None or not any(c.session == today.isoformat() and schema in (None, c.schema)
                                    for c in hub.clients):
            continue
        positions = await market.positions()
        if positions is not None:
            hub.broadcast({"type": "broker", "session": today.isoformat(), "source": "broker",
                           "as_of": clock["market_time"].isoformat(), "positions": positions}, schema)
