"""Market time: what time it is on the market, and waiting until a market time.

Live, market time is wall time. In simulation the simulator publishes a mapping at its clock URL
(``/sim/clock``, from its :class:`~openbell.sim.playback.MarketPlayback`),
``{"market_time": ISO, "wall_time": ISO, "speed": float}``: from that anchor, market time advances
``speed`` times faster than the wall. :class:`SimClock` caches the mapping and re-reads it every
``refresh_seconds`` (a restarted simulator publishes a new one), so every wait converts a market
time into a wall-clock deadline. A clock is described by a JSON-able :meth:`spec` so a trigger can
rebuild it in another process.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)

DEFAULT_REFRESH_SECONDS = 5.0
WALL_CHUNK_SECONDS = 60.0
RETRY_SECONDS = 1.0


class ClockUnavailable(RuntimeError):
    """The simulator's clock endpoint could not be read and no mapping is known yet."""


@runtime_checkable
class MarketClock(Protocol):
    """Market time and waiting on it."""

    def now(self) -> datetime:
        """The current market time (aware, UTC)."""
        ...

    def wall_deadline(self, t: datetime) -> float:
        """The ``time.time()`` value at which market time ``t`` is reached (``inf`` if never)."""
        ...

    def sleep_until(self, t: datetime, lead_seconds: float = 0.0) -> None:
        """Block until market time ``t`` (less ``lead_seconds`` of wall time)."""
        ...

    async def wait_until(self, t: datetime, lead_seconds: float = 0.0) -> None:
        """Wait without blocking the event loop until market time ``t`` (less ``lead_seconds``)."""
        ...

    async def anow(self) -> datetime:
        """:meth:`now`, without blocking the event loop."""
        ...

    def spec(self) -> dict[str, Any]:
        """A JSON-able description from which :func:`clock_from_spec` rebuilds this clock."""
        ...


def _aware(t: datetime) -> datetime:
    if not isinstance(t, datetime):
        raise TypeError(f"market time must be a datetime, got {type(t).__name__}")
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"market time must be timezone-aware, got naive {t.isoformat()}")
    return t


def cached_now(clock: MarketClock) -> datetime:
    """Market time from a simulator clock's last mapping (no I/O, for the event loop); ``clock.now()``
    for a clock without one (the wall clock)."""
    mapping = getattr(clock, "mapping", None)
    return mapping.market_at(time.time()) if mapping is not None else clock.now()


def cached_wall_at(clock: MarketClock, t: datetime) -> float:
    """The ``time.time()`` value at which market time ``t`` is reached, from a simulator clock's last mapping
    (no I/O, for the event loop); ``clock.wall_deadline(t)`` without one."""
    mapping = getattr(clock, "mapping", None)
    return mapping.wall_at(t) if mapping is not None else clock.wall_deadline(t)


class WallClock:
    """Live market time: the wall clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def anow(self) -> datetime:
        return self.now()

    def wall_deadline(self, t: datetime) -> float:
        return _aware(t).timestamp()

    def sleep_until(self, t: datetime, lead_seconds: float = 0.0) -> None:
        deadline = self.wall_deadline(t) - lead_seconds
        while (remaining := deadline - time.time()) > 0:
            time.sleep(min(remaining, WALL_CHUNK_SECONDS))

    async def wait_until(self, t: datetime, lead_seconds: float = 0.0) -> None:
        deadline = self.wall_deadline(t) - lead_seconds
        while (remaining := deadline - time.time()) > 0:
            await asyncio.sleep(min(remaining, WALL_CHUNK_SECONDS))

    def spec(self) -> dict[str, Any]:
        return {"kind": "wall"}

    def __repr__(self) -> str:
        return "WallClock()"


@dataclass(frozen=True)
class ClockMapping:
    """Market time ``market`` coincided with wall time ``wall`` (both epoch seconds); rate ``speed``."""

    market: float
    wall: float
    speed: float

    @classmethod
    def from_json(cls, data: Any) -> ClockMapping:
        """Parse the simulator's clock document; raises ValueError on anything malformed."""
        if not isinstance(data, dict):
            raise ValueError(f"clock document must be a JSON object, got {type(data).__name__}")
        try:
            market = _aware(datetime.fromisoformat(str(data["market_time"]))).timestamp()
            wall = _aware(datetime.fromisoformat(str(data["wall_time"]))).timestamp()
            speed = float(data["speed"])
        except KeyError as exc:
            raise ValueError(f"clock document lacks {exc.args[0]!r}") from exc
        except (TypeError, ValueError) as exc:
            raise ValueError(f"clock document is malformed: {exc}") from exc
        if not math.isfinite(speed) or speed < 0:
            raise ValueError(f"clock speed must be a finite number >= 0, got {data['speed']!r}")
        return cls(market, wall, speed)

    def market_at(self, wall: float) -> datetime:
        """Market time at wall time ``wall``."""
        return datetime.fromtimestamp(self.market + (wall - self.wall) * self.speed, UTC)

    def wall_at(self, market: datetime) -> float:
        """Wall time at which market time ``market`` is reached (``inf`` if the clock is paused)."""
        ahead = _aware(market).timestamp() - self.market
        if self.speed == 0:
            return -math.inf if ahead <= 0 else math.inf
        return self.wall + ahead / self.speed


def _httpx() -> Any:
    """httpx, imported when the simulator's clock is first read: an order worker of a live account never
    reads it and never loads httpx."""
    import httpx

    return httpx


class SimClock:
    """Market time published by the simulator at ``clock_url``, cached and refreshed periodically."""

    def __init__(
        self, clock_url: str, refresh_seconds: float = DEFAULT_REFRESH_SECONDS, timeout: float = 5.0
    ) -> None:
        if not clock_url.startswith(("http://", "https://")):
            raise ValueError(f"clock_url must be an http(s) URL, got {clock_url!r}")
        if refresh_seconds <= 0:
            raise ValueError(f"refresh_seconds must be > 0, got {refresh_seconds}")
        self.clock_url = clock_url
        self.refresh_seconds = float(refresh_seconds)
        self.timeout = float(timeout)
        self._mapping: ClockMapping | None = None
        self._fetched_at = -math.inf  # time.monotonic() of the last good read
        # plain http needs no TLS context, whose CA loading costs ~35 ms of CPU per client (the GIL
        # that the live loop waits for)
        self._verify = clock_url.startswith("https://")

    # -- the mapping -----------------------------------------------------------------------------

    @property
    def mapping(self) -> ClockMapping | None:
        """The last mapping read, if any."""
        return self._mapping

    def _stale(self) -> bool:
        return time.monotonic() - self._fetched_at >= self.refresh_seconds

    def _store(self, response: httpx.Response) -> ClockMapping:
        response.raise_for_status()
        mapping = ClockMapping.from_json(response.json())
        if self._mapping is not None and mapping != self._mapping:
            log.debug("sim clock mapping changed: %s", mapping)
        self._mapping, self._fetched_at = mapping, time.monotonic()
        return mapping

    def refresh(self) -> ClockMapping:
        """Read the mapping now (blocking)."""
        with _httpx().Client(timeout=self.timeout, verify=self._verify) as client:
            return self._store(client.get(self.clock_url))

    async def arefresh(self) -> ClockMapping:
        """Read the mapping now without blocking the event loop."""
        async with _httpx().AsyncClient(timeout=self.timeout, verify=self._verify) as client:
            return self._store(await client.get(self.clock_url))

    def _current(self) -> ClockMapping:
        if self._stale():
            try:
                return self.refresh()
            except (_httpx().HTTPError, ValueError) as exc:
                if self._mapping is None:
                    raise ClockUnavailable(f"cannot read the sim clock at {self.clock_url}: {exc}") from exc
                log.warning("sim clock at %s unreadable (%s); using the last mapping", self.clock_url, exc)
        assert self._mapping is not None
        return self._mapping

    async def _acurrent(self) -> ClockMapping:
        if self._stale():
            try:
                return await self.arefresh()
            except (_httpx().HTTPError, ValueError) as exc:
                if self._mapping is None:
                    raise ClockUnavailable(f"cannot read the sim clock at {self.clock_url}: {exc}") from exc
                log.warning("sim clock at %s unreadable (%s); using the last mapping", self.clock_url, exc)
        assert self._mapping is not None
        return self._mapping

    # -- MarketClock -----------------------------------------------------------------------------

    def now(self) -> datetime:
        return self._current().market_at(time.time())

    async def anow(self) -> datetime:
        return (await self._acurrent()).market_at(time.time())

    def wall_deadline(self, t: datetime) -> float:
        return self._current().wall_at(t)

    def sleep_until(self, t: datetime, lead_seconds: float = 0.0) -> None:
        """Block until market time ``t``; an unreachable simulator is retried with a log line."""
        _aware(t)
        while True:
            if self._stale():
                try:
                    self.refresh()
                except (_httpx().HTTPError, ValueError) as exc:
                    log.warning("sim clock at %s unreadable (%s); retrying", self.clock_url, exc)
                    time.sleep(RETRY_SECONDS)
                    continue
            remaining = self._wait_seconds(t, lead_seconds)
            if remaining <= 0:
                return
            time.sleep(remaining)

    async def wait_until(self, t: datetime, lead_seconds: float = 0.0) -> None:
        """Wait until market time ``t``; an unreachable simulator is retried with a log line."""
        _aware(t)
        while True:
            if self._stale():
                try:
                    await self.arefresh()
                except (_httpx().HTTPError, ValueError) as exc:
                    log.warning("sim clock at %s unreadable (%s); retrying", self.clock_url, exc)
                    await asyncio.sleep(RETRY_SECONDS)
                    continue
            remaining = self._wait_seconds(t, lead_seconds)
            if remaining <= 0:
                return
            await asyncio.sleep(remaining)

    def _wait_seconds(self, t: datetime, lead_seconds: float) -> float:
        """Wall seconds to sleep next: until the deadline, but no longer than the next refresh."""
        assert self._mapping is not None
        remaining = self._mapping.wall_at(t) - lead_seconds - time.time()
        if remaining <= 0:
            return 0.0
        until_refresh = self._fetched_at + self.refresh_seconds - time.monotonic()
        return max(0.001, min(remaining, until_refresh))

    def spec(self) -> dict[str, Any]:
        return {"kind": "sim", "clock_url": self.clock_url, "refresh_seconds": self.refresh_seconds,
                "timeout": self.timeout}

    def __repr__(self) -> str:
        return f"SimClock({self.clock_url!r})"


def clock_from_spec(spec: dict[str, Any]) -> MarketClock:
    """Rebuild a clock from :meth:`MarketClock.spec`."""
    if not isinstance(spec, dict):
        raise TypeError(f"clock spec must be a dict, got {type(spec).__name__}")
    kind = spec.get("kind")
    if kind == "wall":
        return WallClock()
    if kind == "sim":
        if not spec.get("clock_url"):
            raise ValueError("sim clock spec lacks 'clock_url'")
        return SimClock(
            str(spec["clock_url"]),
            refresh_seconds=float(spec.get("refresh_seconds", DEFAULT_REFRESH_SECONDS)),
            timeout=float(spec.get("timeout", 5.0)),
        )
    raise ValueError(f"unknown clock kind {kind!r} (expected 'wall' or 'sim')")


class ClockSettings(Protocol):
    """What :func:`clock_for` reads of a connection's settings (the Alpaca adapter's ``AlpacaConfig``)."""

    @property
    def clock_url(self) -> str | None: ...

    @property
    def timeout(self) -> float: ...


def clock_for(config: ClockSettings) -> MarketClock:
    """The simulator's clock when the config has a ``clock_url``, else the wall clock."""
    if config.clock_url:
        return SimClock(config.clock_url, timeout=min(config.timeout, 5.0))
    return WallClock()
