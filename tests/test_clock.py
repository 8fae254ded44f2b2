"""Market clocks: the mapping math, and SimClock against a loopback clock endpoint."""

from __future__ import annotations

import asyncio
import json
import math
import time
from datetime import UTC, datetime, timedelta

import pytest

from clock_endpoint import ClockEndpoint
from openbell import clock as clock_mod
from openbell.adapters.alpaca.config import AlpacaConfig
from openbell.clock import ClockMapping, ClockUnavailable, SimClock, WallClock, clock_for, clock_from_spec

T0 = datetime(2025, 11, 26, 14, 25, tzinfo=UTC)  # 09:25 ET


def test_mapping_math() -> None:
    m = ClockMapping(market=T0.timestamp(), wall=1000.0, speed=600.0)
    assert m.market_at(1000.0) == T0
    assert m.market_at(1001.0) == T0 + timedelta(minutes=10)
    assert m.wall_at(T0 + timedelta(minutes=5)) == pytest.approx(1000.5)
    assert m.wall_at(T0 - timedelta(minutes=60)) == pytest.approx(994.0)
    paused = ClockMapping(market=T0.timestamp(), wall=1000.0, speed=0.0)
    assert paused.market_at(5000.0) == T0
    assert paused.wall_at(T0 + timedelta(seconds=1)) == math.inf
    assert paused.wall_at(T0) == -math.inf


def test_mapping_parses_the_simulator_document_and_refuses_bad_ones() -> None:
    doc = {"market_time": "2025-11-26T09:25:00-05:00", "wall_time": "1970-01-01T00:16:40Z", "speed": 60}
    m = ClockMapping.from_json({**doc, "extra": True})
    assert (m.market, m.wall, m.speed) == (T0.timestamp(), 1000.0, 60.0)
    with pytest.raises(ValueError, match="lacks 'speed'"):
        ClockMapping.from_json({"market_time": T0.isoformat(), "wall_time": T0.isoformat()})
    with pytest.raises(ValueError, match="timezone-aware"):
        ClockMapping.from_json({**doc, "market_time": "2025-11-26T09:25:00"})
    with pytest.raises(ValueError, match="speed"):
        ClockMapping.from_json({"market_time": T0.isoformat(), "wall_time": T0.isoformat(), "speed": -1})
    with pytest.raises(ValueError, match="JSON object"):
        ClockMapping.from_json([1, 2])


def test_sim_clock_follows_the_endpoint(endpoint: ClockEndpoint) -> None:
    wall0 = time.time() - 2.0  # two wall seconds ago: 20 market minutes
    endpoint.anchor(T0, speed=600.0, wall=wall0)
    clock = SimClock(endpoint.url, refresh_seconds=30.0)
    now = clock.now()
    assert T0 + timedelta(minutes=20) <= now < T0 + timedelta(minutes=30)
    target = T0 + timedelta(minutes=25)  # 1500 market seconds = 2.5 wall seconds after the anchor
    assert clock.wall_deadline(target) == pytest.approx(wall0 + 2.5, abs=1e-3)


def test_sim_clock_caches_then_refreshes_after_a_restart(endpoint: ClockEndpoint) -> None:
    endpoint.anchor(T0, speed=60.0)
    clock = SimClock(endpoint.url, refresh_seconds=0.3)
    first = clock.now()
    for _ in range(20):
        clock.now()
    assert endpoint.requests == 1  # cached within refresh_seconds
    restarted = T0 + timedelta(hours=4)
    endpoint.anchor(restarted, speed=60.0)  # a restarted simulator publishes a new anchor
    assert clock.now() < restarted  # still the cached mapping
    time.sleep(0.35)
    after = clock.now()
    assert endpoint.requests == 2
    assert restarted <= after < restarted + timedelta(minutes=5)
    assert first < T0 + timedelta(minutes=5)


def test_sleep_until_reaches_the_market_time(endpoint: ClockEndpoint) -> None:
    endpoint.anchor(T0, speed=600.0)
    clock = SimClock(endpoint.url, refresh_seconds=0.2)
    target = T0 + timedelta(minutes=5)  # half a wall second away
    clock.sleep_until(target)
    assert clock.now() >= target
    assert endpoint.requests >= 2  # re-read the mapping while waiting
    clock.sleep_until(T0)  # already past: returns at once
    assert clock.now() >= target


def test_wait_until_follows_a_changed_mapping(endpoint: ClockEndpoint) -> None:
    """A wait for a far market time ends when the simulator jumps past it."""
    endpoint.anchor(T0, speed=1.0)
    clock = SimClock(endpoint.url, refresh_seconds=0.1)
    target = T0 + timedelta(hours=2)

    async def scenario() -> datetime:
        waiter = asyncio.create_task(clock.wait_until(target))
        await asyncio.sleep(0.3)
        assert not waiter.done()
        endpoint.anchor(target + timedelta(minutes=1), speed=1.0)
        await asyncio.wait_for(waiter, timeout=10)
        return await clock.anow()

    assert asyncio.run(scenario()) >= target


def test_unreachable_endpoint(endpoint: ClockEndpoint, monkeypatch: pytest.MonkeyPatch) -> None:
    dead = SimClock("http://127.0.0.1:9/sim/clock", refresh_seconds=0.1, timeout=1.0)
    with pytest.raises(ClockUnavailable, match=r"127\.0\.0\.1:9/"):
        dead.now()
    # with a known mapping, a failed refresh keeps the last one
    endpoint.anchor(T0, speed=60.0)
    clock = SimClock(endpoint.url, refresh_seconds=0.05)
    clock.now()
    endpoint.fail_next = 1
    time.sleep(0.1)
    assert T0 <= clock.now() < T0 + timedelta(minutes=5)
    # a sleep retries through failures rather than deciding on a stale mapping
    monkeypatch.setattr(clock_mod, "RETRY_SECONDS", 0.05)
    endpoint.fail_next = 3
    before = endpoint.requests
    clock.sleep_until(T0 + timedelta(seconds=30))
    assert endpoint.requests >= before + 4
    assert clock.now() >= T0 + timedelta(seconds=30)


def test_wall_clock() -> None:
    wall = WallClock()
    now = wall.now()
    assert now.tzinfo is not None
    assert abs(now.timestamp() - time.time()) < 1
    t = datetime(2025, 11, 26, 14, 30, tzinfo=UTC)
    assert wall.wall_deadline(t) == t.timestamp()
    wall.sleep_until(t)  # in the past: returns
    asyncio.run(wall.wait_until(t))
    with pytest.raises(ValueError, match="timezone-aware"):
        wall.wall_deadline(datetime(2025, 11, 26, 14, 30))


def test_specs_round_trip_and_clock_for() -> None:
    sim = clock_for(AlpacaConfig.for_simulator("http://127.0.0.1:8123", "key-id-x", "secret-value-x"))
    assert isinstance(sim, SimClock) and sim.clock_url == "http://127.0.0.1:8123/sim/clock"
    spec = sim.spec()
    assert json.loads(json.dumps(spec)) == spec
    assert "secret-value-x" not in json.dumps(spec) and "key-id-x" not in json.dumps(spec)
    again = clock_from_spec(spec)
    assert isinstance(again, SimClock) and again.spec() == spec
    live = clock_for(AlpacaConfig(key_id="k", secret_key="s"))
    assert isinstance(live, WallClock)
    assert isinstance(clock_from_spec(live.spec()), WallClock)
    with pytest.raises(ValueError, match="unknown clock kind"):
        clock_from_spec({"kind": "sundial"})
    with pytest.raises(ValueError, match="clock_url"):
        clock_from_spec({"kind": "sim"})
    with pytest.raises(ValueError, match="http"):
        SimClock("127.0.0.1:8123/sim/clock")
