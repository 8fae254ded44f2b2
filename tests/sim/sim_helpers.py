"""Helpers shared by the simulator's tests."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderSide, OrderStatus, TimeInForce
from alpaca.trading.requests import MarketOrderRequest

from openbell.sim.testing import SimProcess


def within_rate_limit(sim: SimProcess) -> None:
    """The tests' own Trading API use stays under Alpaca's 200 requests a minute."""
    limit = sim.health()["rate_limit"]
    assert limit["limited"] == 0 and limit["peak"] <= 200, limit


def order(symbol: str, side: str = "buy", cid: str | None = None, **kw: object) -> MarketOrderRequest:
    return MarketOrderRequest(symbol=symbol, side=OrderSide(side), time_in_force=TimeInForce.DAY,
                              client_order_id=cid, **kw)


def wait_status(client: TradingClient, oid: object, status: OrderStatus, timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        o = client.get_order_by_id(oid)
        if o.status == status or time.monotonic() > deadline:
            return o
        time.sleep(0.05)


def market_clock(sim: SimProcess) -> Callable[[], datetime]:
    """A function of the simulator's market time now, from one read of ``/sim/clock``."""
    c = sim.clock()
    wall = datetime.fromisoformat(c["wall_time"]).timestamp()
    market = datetime.fromisoformat(c["market_time"])
    return lambda: market + timedelta(seconds=(time.time() - wall) * c["speed"])


async def run_until(stream: Any, done: Callable[[], bool], timeout: float = 15.0) -> bool:
    """Run an SDK stream in this loop until ``done()`` or the timeout; stop it cleanly."""
    task = asyncio.create_task(stream._run_forever())
    deadline = time.monotonic() + timeout
    ok = False
    try:
        while time.monotonic() < deadline:
            if done():
                ok = True
                break
            await asyncio.sleep(0.02)
    finally:
        await stream.stop_ws()
        await asyncio.wait_for(task, 10)
    return ok


def raw(sim: SimProcess, method: str, path: str, body: object = None) -> tuple[int, dict[str, str], Any]:
    """(status, headers, JSON body) of one request with the simulator's key."""
    headers = {"APCA-API-KEY-ID": sim.key, "APCA-API-SECRET-KEY": sim.secret, "Content-Type": "application/json"}
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(sim.base_url + path, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), json.loads(r.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), json.loads(exc.read() or b"null")
