"""The loss stop ends flat: REDUCING with every target at zero, closes tried each minute (a halted symbol's
when it resumes, one a pre-trade limit would refuse at once), HALTED only once the broker shows them closed.
And a key the broker refuses on an order stops the attempt instead of leaving an order "working" all day.

A real simulator (its market at 1x) and a real Postgres; the session is prepared as ``TradingAttempt.run``
prepares it, then each minute is decided through the decider as ``_drive`` decides it.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import Engine

from dates import SESSION
from live_parts import broker_orders, flushed, prepared, rows, run, sim_run, until
from openbell.adapters.alpaca.broker import AlpacaBroker
from openbell.policy import OrderLimits
from openbell.ports import CredentialsError
from openbell.sim.testing import SimProcess
from openbell.store.sessions import get_risk
from openbell.trading import TradingAttempt
from openbell.trading.minutes import MINUTE
from openbell.trading.sender import OrderSender


def decide(live: TradingAttempt) -> None:
    """The next minute decided on no new bar (prices stay), as a streamed minute: orders may go."""
    t = live.book.next_minute
    live.decider.decide(t, {}, None, trade=True)
    live.book.next_minute = t + MINUTE


def held(sim: SimProcess) -> dict[str, float]:
    return {p.symbol: float(p.qty) for p in sim.config().trading_client().get_all_positions()}


async def synced(live: TradingAttempt) -> None:
    """The working orders looked up (their fills recovered), then one broker sync, as the housekeeping runs
    them between minutes, applied on the loop."""
    async def polled() -> bool:
        await asyncio.to_thread(live.sync.poll_orders, list(live.portfolio.working))
        await asyncio.sleep(0.05)
        return not live.portfolio.working

    for _ in range(100):
        if await polled():
            break
    await asyncio.to_thread(live.sync.sync_account)
    await asyncio.sleep(0.1)


def test_a_loss_stop_closes_what_a_halt_and_a_limit_hold_then_halts_once_flat(engine: Engine, tmp_path: Path) -> None:
    async def scenario() -> None:
        seeds = ["--seed-position=SSO:1200", "--seed-position=TQQQ:40"]
        with sim_run(tmp_path, seeds) as sim:
            limits = OrderLimits(max_order_notional=50_000.0, price_collar=0.0001, max_orders_per_minute=1)
            async with prepared(sim, engine, limits=limits) as live:
                assert live.portfolio.positions["SSO"] * live.portfolio.prices["SSO"] > 50_000.0
                live.halts.on_status("TQQQ", "H", "T1")  # TQQQ's trading is halted
                live.gate.halt("daily loss limit: drill")
                decide(live)  # the trip: SSO's 1,200-share close goes; TQQQ's is held by the halt
                assert live.risk.state == "REDUCING" and live.report.loss_stop
                await until(lambda: not held(sim).get("SSO"), "SSO closed at the broker")
                await synced(live)
                assert live.risk.state == "REDUCING", "halted with TQQQ still held"
                assert get_risk(engine, SESSION).state == "REDUCING"
                decide(live)  # still halted: nothing goes
                live.halts.on_status("TQQQ", "T", "")  # trading resumes
                decide(live)
                await until(lambda: not held(sim), "TQQQ closed at the broker")
                await synced(live)
                assert live.risk.state == "HALTED"
                decide(live)  # HALTED: nothing more
                await flushed(live)
                orders = broker_orders(sim)
                await asyncio.sleep(0.2)
        assert sorted((o.symbol, o.side.value, float(o.qty or 0)) for o in orders) == [
            ("SSO", "sell", 1200.0), ("TQQQ", "sell", 40.0)]
        assert live.report.orders_refused_by_limit == {}
        stored = get_risk(engine, SESSION)
        assert stored.state == "HALTED" and stored.by == "openbell" and "daily loss limit" in stored.reason
        assert [c["state"] for c in live.report.risk_changes] == ["REDUCING", "HALTED"]

    run(scenario)


def test_a_loss_stop_tripped_on_a_catch_up_minute_still_closes_on_the_next(engine: Engine, tmp_path: Path) -> None:
    async def scenario() -> None:
        with sim_run(tmp_path, ["--seed-position=SSO:100"]) as sim:
            async with prepared(sim, engine) as live:
                live.gate.halt("daily loss limit: drill")
                t = live.book.next_minute
                live.decider.decide(t, {}, None, trade=False)  # a catch-up minute sends nothing
                live.book.next_minute = t + MINUTE
                assert live.risk.state == "REDUCING" and broker_orders(sim) == []
                decide(live)
                await until(lambda: not held(sim), "SSO closed at the broker")
                await synced(live)
                assert live.risk.state == "HALTED"

    run(scenario)


def test_a_refused_key_on_an_order_is_not_sent_stops_every_order_and_keeps_the_sync_on(
        engine: Engine, tmp_path: Path) -> None:
    """A 401 on submit was an unknown outcome whose lookups failed too: working all day, no sync. Now it is
    not sent, recorded as such, no further order leaves, and the attempt is failed by the loop."""



    async def scenario() -> None:
        with sim_run(tmp_path) as sim:
            async with prepared(sim, engine) as live:
                revoked = AlpacaBroker(replace(sim.config(), secret_key="revoked-secret"))
                sender = OrderSender(revoked, live.dispatch.on_sent, workers=1, threads=1)
                await asyncio.to_thread(sender.start)
                live.dispatch.sender = sender
                try:
                    decide_with(live, {"SSO": 0.1})
                    await until(lambda: live.send_gate.credentials_refused is not None, "the refusal came back")
                    assert live.portfolio.working == {}  # nothing counts as working: the sync stays on
                    assert live.send_gate.closed(live.dispatch.market_now()) == (
                        f"the broker refused the credentials ({live.send_gate.credentials_refused})")
                    with pytest.raises(CredentialsError, match="refused the credentials"):
                        await asyncio.to_thread(live._credentials_refused, live.send_gate.credentials_refused)
                    await flushed(live)
                finally:
                    sender.close()
                orders = broker_orders(sim)
        assert orders == [] and live.report.orders_not_sent == 1
        [(status, why)] = rows(engine, "SELECT status, reject_reason FROM orders")
        assert status == "not_sent" and "credentials" in why and "revoked-secret" not in why

    run(scenario)


def decide_with(live: TradingAttempt, weights: dict[str, float]) -> None:
    """One decision's orders sent as the decider sends them."""
    live.dispatch.place(live.seq, weights, [], None, trade=True)
    live.seq += 1
