"""Several accounts in one simulator (``--account``), seen through alpaca-py's real clients: each key has its own
orders, positions, account, request budget, trade updates and stream connection limit; market data is shared."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from alpaca.common.exceptions import APIError
from alpaca.data.enums import DataFeed
from alpaca.data.live import StockDataStream
from alpaca.data.requests import StockBarsRequest
from alpaca.data.timeframe import TimeFrame
from alpaca.trading.enums import OrderStatus, QueryOrderStatus
from alpaca.trading.requests import GetOrdersRequest
from alpaca.trading.stream import TradingStream
from sim_helpers import order, wait_status, within_rate_limit

from openbell.sim.accounts import parse_account
from openbell.sim.simulator import SimConfig
from openbell.sim.testing import SimProcess


@pytest.fixture(scope="module")
def sim() -> Iterator[SimProcess]:
    """Two accounts, alice and bob, on an open market (09:31 ET at 60x), each seeded with AAPL 10."""
    with SimProcess(speed=60, start="09:31", accounts=["alice", "bob"],
                    extra_args=["--cash", "50000", "--seed-position", "AAPL:10"]) as s:
        yield s
        within_rate_limit(s)


def _get(sim: SimProcess, path: str, key: str, secret: str) -> tuple[int, dict[str, str], Any]:
    req = urllib.request.Request(sim.base_url + path, headers={"APCA-API-KEY-ID": key, "APCA-API-SECRET-KEY": secret})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), json.loads(exc.read())


def test_each_account_sees_only_its_own_orders_positions_and_account(sim: SimProcess) -> None:
    alice, bob = sim.config(account="alice").trading_client(), sim.config(account="bob").trading_client()
    placed = alice.submit_order(order("SPY", qty=3, cid="acct-1"))
    assert wait_status(alice, placed.id, OrderStatus.FILLED).status == OrderStatus.FILLED
    assert {p.symbol: float(p.qty) for p in alice.get_all_positions()} == {"AAPL": 10, "SPY": 3}
    assert {p.symbol: float(p.qty) for p in bob.get_all_positions()} == {"AAPL": 10}
    assert [o.client_order_id for o in bob.get_orders(GetOrdersRequest(status=QueryOrderStatus.ALL))] == []
    for call, arg in ((bob.get_order_by_id, placed.id), (bob.get_order_by_client_id, "acct-1"),
                      (bob.cancel_order_by_id, placed.id), (bob.get_open_position, "SPY")):
        with pytest.raises(APIError) as exc:
            call(arg)
        assert exc.value.status_code == 404, call
    a, b = alice.get_account(), bob.get_account()
    assert a.id != b.id and a.account_number != b.account_number
    assert float(b.cash) == 50000 and float(a.cash) < 50000
    again = bob.submit_order(order("SPY", qty=1, cid="acct-1"))  # a client order id is unique per account
    assert wait_status(bob, again.id, OrderStatus.FILLED).status == OrderStatus.FILLED
    assert float(alice.get_open_position("SPY").qty) == 3 and float(bob.get_open_position("SPY").qty) == 1
    accounts = sim.health()["accounts"]
    assert accounts["alice"]["broker"]["fills"] >= 1 and accounts["bob"]["broker"]["fills"] >= 1
    assert sim.health()["broker"]["fills"] == accounts["alice"]["broker"]["fills"] + accounts["bob"]["broker"]["fills"]


def test_closing_all_positions_closes_only_the_callers(sim: SimProcess) -> None:
    alice, bob = sim.config(account="alice").trading_client(), sim.config(account="bob").trading_client()
    held = {p.symbol: float(p.qty) for p in bob.get_all_positions()}
    alice.close_all_positions(cancel_orders=True)
    deadline = time.monotonic() + 10
    while alice.get_all_positions() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert alice.get_all_positions() == []
    assert {p.symbol: float(p.qty) for p in bob.get_all_positions()} == held != {}


def test_trade_updates_reach_only_their_account(sim: SimProcess) -> None:
    events: dict[str, list[Any]] = {"alice": [], "bob": []}

    def own_fill(name: str, cid: str) -> bool:
        return any(e.event == "fill" and e.order.client_order_id == cid for e in events[name])

    async def scenario() -> None:
        streams = []
        for name in events:
            stream = sim.config(account=name).trading_stream()

            async def on_update(u: Any, name: str = name) -> None:
                events[name].append(u)

            stream.subscribe_trade_updates(on_update)
            streams.append((stream, asyncio.create_task(stream._run_forever())))
        await asyncio.sleep(0.5)  # authorized and listening
        await asyncio.to_thread(sim.config(account="alice").trading_client().submit_order, order("QQQ", qty=1,
                                                                                                 cid="tu-alice"))
        await asyncio.to_thread(sim.config(account="bob").trading_client().submit_order, order("IWM", qty=1,
                                                                                               cid="tu-bob"))
        deadline = time.monotonic() + 10
        while not (own_fill("alice", "tu-alice") and own_fill("bob", "tu-bob")) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        for stream, task in streams:
            await stream.stop_ws()
            await stream.close()
            await asyncio.wait_for(task, 10)

    asyncio.run(scenario())
    assert own_fill("alice", "tu-alice") and own_fill("bob", "tu-bob")
    assert {e.order.client_order_id for e in events["alice"]} == {"tu-alice"}
    assert {e.order.client_order_id for e in events["bob"]} == {"tu-bob"}


def test_the_stream_connection_limit_counts_per_key(sim: SimProcess) -> None:
    async def scenario() -> tuple[str, str]:
        first = sim.config(account="alice").data_stream()
        await first._start_ws()
        outcomes = []
        for name in ("alice", "bob"):
            other = sim.config(account=name).data_stream()
            try:
                await other._start_ws()
                outcomes.append("connected")
            except ValueError as exc:
                outcomes.append(str(exc))
            finally:
                await other.close()
        await first.close()
        return outcomes[0], outcomes[1]

    before = sim.faults()["counters"]["connection_limit_refusals"]
    assert asyncio.run(scenario()) == ("connection limit exceeded", "connected")
    assert sim.faults()["counters"]["connection_limit_refusals"] == before + 1


def test_a_key_with_another_accounts_secret_is_refused(sim: SimProcess) -> None:
    key_a, secret_a = sim.credentials("alice")
    key_b, secret_b = sim.credentials("bob")
    assert _get(sim, "/v2/account", key_a, secret_a)[0] == 200
    for key, secret in ((key_a, secret_b), (key_b, secret_a), (key_a, "wrong"), ("nobody", secret_a)):
        status, _, body = _get(sim, "/v2/account", key, secret)
        assert (status, body["message"]) == (401, "request is not authorized"), (key, secret)

    async def stream_auth() -> list[str]:
        out = []
        url = sim.base_url.replace("http", "ws")
        for stream in (StockDataStream(key_a, secret_b, url_override=url + "/v2/iex"),
                       TradingStream(key_b, secret_a, url_override=url + "/stream")):
            try:
                await stream._start_ws()
                out.append("connected")
            except ValueError as exc:
                out.append(str(exc))
            finally:
                await stream.close()
        return out

    assert asyncio.run(stream_auth()) == ["auth failed", "failed to authenticate"]


def test_health_reports_each_account_and_market_data_is_shared(sim: SimProcess) -> None:
    health = sim.health()
    assert set(health["accounts"]) == {"alice", "bob"}
    for name in ("alice", "bob"):
        one = health["accounts"][name]
        assert set(one) == {"data_connections", "trade_connections", "broker", "splits_applied", "rate_limit"}
        assert one["rate_limit"]["limit"] == 200
    assert health["rate_limit"]["requests"] == sum(a["rate_limit"]["requests"] for a in health["accounts"].values())
    alice, bob = sim.config(account="alice").trading_client(), sim.config(account="bob").trading_client()
    assert alice.get_clock().next_close == bob.get_clock().next_close
    assert [a.symbol for a in alice.get_all_assets()] == [a.symbol for a in bob.get_all_assets()]
    minute = datetime(2025, 11, 20, 14, 30, tzinfo=UTC)  # 09:30 ET, before the module's market time
    request = StockBarsRequest(symbol_or_symbols="SPY", timeframe=TimeFrame.Minute, start=minute, end=minute,
                               feed=DataFeed.SIP)
    bars = [sim.config(account=name).data_client().get_stock_bars(request).data["SPY"] for name in ("alice", "bob")]
    assert bars[0] == bars[1] and len(bars[0]) == 1


def test_each_key_has_its_own_request_budget() -> None:
    with SimProcess(speed=1, start="09:31", accounts=["alice", "bob"], extra_args=["--rate-limit", "3"]) as sim:
        key_a, secret_a = sim.credentials("alice")
        key_b, secret_b = sim.credentials("bob")
        for left in (2, 1, 0):
            status, headers, _ = _get(sim, "/v2/account", key_a, secret_a)
            assert (status, headers["X-RateLimit-Remaining"]) == (200, str(left))
        status, _, body = _get(sim, "/v2/orders", key_a, secret_a)
        assert (status, body["message"]) == (429, "rate limit exceeded")
        status, headers, _ = _get(sim, "/v2/account", key_b, secret_b)
        assert (status, headers["X-RateLimit-Remaining"]) == (200, "2")
        health = sim.health()
        assert health["accounts"]["alice"]["rate_limit"] == {"limit": 3, "requests": 4, "limited": 1, "peak": 4}
        assert health["accounts"]["bob"]["rate_limit"] == {"limit": 3, "requests": 1, "limited": 0, "peak": 1}
        assert health["rate_limit"] == {"limit": 3, "requests": 5, "limited": 1, "peak": 4}


def test_each_account_keeps_its_state_across_a_restart() -> None:
    with SimProcess(speed=60, start="09:31", accounts=["alice", "bob"]) as sim:
        alice = sim.config(account="alice").trading_client()
        placed = alice.submit_order(order("SPY", qty=2, cid="keep-1"))
        assert wait_status(alice, placed.id, OrderStatus.FILLED).status == OrderStatus.FILLED
        ids = {name: sim.config(account=name).trading_client().get_account().id for name in ("alice", "bob")}
        sim.restart()
        for name in ("alice", "bob"):
            client = sim.config(account=name).trading_client()
            assert client.get_account().id == ids[name]
            assert [p.symbol for p in client.get_all_positions()] == (["SPY"] if name == "alice" else [])
        assert sorted(p.name for p in (sim.data_dir / "accounts").iterdir()) == ["alice", "bob"]


def test_a_single_account_simulator_reports_no_accounts_and_names_none() -> None:
    with SimProcess(speed=60, start="09:31") as sim:
        assert "accounts" not in sim.health()
        assert sim.config().key_id == sim.key
        with pytest.raises(ValueError, match="no account 'alice'"):
            sim.config(account="alice")
        assert not (sim.data_dir / "accounts").exists()


def test_an_accounts_secret_stays_out_of_reprs(tmp_path: Path) -> None:
    spec = parse_account("alice:key-a:Zq7:secret")  # a secret may hold ':'
    assert (spec.name, spec.key, spec.secret) == ("alice", "key-a", "Zq7:secret")
    cfg = SimConfig(session_date=date(2025, 11, 20), data_dir=tmp_path, api_key="k", secret_key="s", accounts=[spec])
    assert "Zq7" not in repr(spec) and "Zq7" not in repr(cfg) and "alice" in repr(cfg)


def test_the_accounts_secrets_are_on_no_command_line(sim: SimProcess) -> None:
    """SimProcess hands the accounts over in $OPENBELL_SIM_ACCOUNTS: no secret shows in the process list."""
    assert sim.proc is not None
    cmdline = Path(f"/proc/{sim.proc.pid}/cmdline").read_bytes().decode(errors="replace")
    for name in ("alice", "bob"):
        key, secret = sim.credentials(name)
        assert secret not in cmdline
        status, _, body = _get(sim, "/v2/account", key, secret)
        assert status == 200, body


def test_a_bad_line_of_the_accounts_variable_is_named_without_its_secret() -> None:
    from openbell.sim.accounts import accounts_from_env

    good = accounts_from_env("alice:key-a:s3cret-a\n\n bob:key-b:s3cret-b \n")
    assert [(s.name, s.key) for s in good] == [("alice", "key-a"), ("bob", "key-b")]
    with pytest.raises(ValueError, match="line 2") as refused:
        accounts_from_env("alice:key-a:s3cret-a\nBad Name:key-b:s3cret-b")
    assert "s3cret" not in str(refused.value)
