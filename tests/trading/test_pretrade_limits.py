"""Pre-trade limits and the risk state at the send gate: an order over a limit is refused, recorded (an
``order_refused`` event, the report's count, the decision's note) and never reaches the broker; REDUCING
lets only orders that shrink a position out, HALTED none.

A real simulator (its market at 1x) and a real Postgres; the session is prepared as ``TradingAttempt.run``
prepares it, then each test places decisions through the dispatcher as the decider does.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from dates import SESSION
from live_parts import broker_orders, flushed, prepared, rows, run, sim_run, until
from openbell.broker.book import orders_sent
from openbell.policy import OrderLimits
from openbell.sim.testing import SimProcess
from openbell.strategy import Bar
from openbell.trading import TradingAttempt


async def settled(live: TradingAttempt, sim: SimProcess) -> None:
    """The orders sent are filled at the broker and everything queued so far is in Postgres."""
    def filled() -> bool:
        return all(o.status.value == "filled" for o in broker_orders(sim))

    await asyncio.sleep(0.3)
    await until(filled, "the orders sent are filled")
    await flushed(live)


def place(live: TradingAttempt, weights: dict[str, float]) -> tuple[list[str], list[str]]:
    """One decision's orders sent as the decider sends them: (symbols sent, notes)."""
    notes: list[str] = []
    placed = live.dispatch.place(live.seq, weights, notes, None, trade=True)
    live.seq += 1
    return [i.symbol for _, i in placed], notes


def refusals(engine: Engine) -> list[dict[str, Any]]:
    return [r[0] for r in rows(engine, "SELECT payload FROM events WHERE kind = 'order_refused' ORDER BY id")]


def test_an_order_over_the_notional_limit_is_refused_recorded_and_never_sent(engine: Engine, tmp_path: Path) -> None:
    async def scenario() -> None:
        with sim_run(tmp_path) as sim:
            async with prepared(sim, engine, limits=OrderLimits(max_order_notional=10_000.0)) as live:
                sent, notes = place(live, {"SSO": 0.2, "TQQQ": 0.05})  # about 20k and 5k of 100k
                await settled(live, sim)
                orders = broker_orders(sim)
        assert sent == ["TQQQ"] and [o.symbol for o in orders] == ["TQQQ"]
        assert live.report.orders_refused_by_limit == {"max_order_notional": 1} and live.report.orders == 1
        [event] = refusals(engine)
        assert (event["symbol"], event["side"], event["limit"]) == ("SSO", "buy", "max_order_notional")
        assert event["value"] == pytest.approx(event["qty"] * live.portfolio.prices["SSO"]) and event["value"] > 10_000
        assert any(n.startswith("SSO: buy of") and "max_order_notional" in n for n in notes)

    run(scenario)


def test_a_position_over_its_limit_is_not_built_and_a_reduction_still_goes(engine: Engine, tmp_path: Path) -> None:
    async def scenario() -> None:
        with sim_run(tmp_path, ["--seed-position=SSO:100"]) as sim:
            async with prepared(sim, engine, limits=OrderLimits(max_position_notional=8_000.0)) as live:
                held = 100 * live.portfolio.prices["SSO"]
                assert held > 8_000  # the seeded position is already over the limit
                grow, _ = place(live, {"SSO": 0.3, "TQQQ": 0.1})  # SSO grows, TQQQ opens at about 10k
                await settled(live, sim)
                shrink, _ = place(live, {"SSO": 0.0})
                await settled(live, sim)
                orders = broker_orders(sim)
        assert grow == [] and shrink == ["SSO"]
        assert [(o.symbol, o.side.value) for o in orders] == [("SSO", "sell")]
        assert live.report.orders_refused_by_limit == {"max_position_notional": 2}
        assert sorted(e["symbol"] for e in refusals(engine)) == ["SSO", "TQQQ"]

    run(scenario)


def test_orders_over_the_rate_per_minute_are_refused(engine: Engine, tmp_path: Path) -> None:
    async def scenario() -> None:
        with sim_run(tmp_path, ["--seed-position=SSO:100"]) as sim:
            async with prepared(sim, engine, limits=OrderLimits(max_orders_per_minute=1)) as live:
                first, notes = place(live, {"SSO": 0.0, "TQQQ": 0.05})  # the sell goes first
                await settled(live, sim)
                second, _ = place(live, {"TQQQ": 0.05})  # within the same market minute
                await settled(live, sim)
                orders = broker_orders(sim)
        assert first == ["SSO"] and second == [] and [o.symbol for o in orders] == ["SSO"]
        assert live.report.orders_refused_by_limit == {"max_orders_per_minute": 2}
        assert [(e["symbol"], e["value"], e["bound"]) for e in refusals(engine)] == [("TQQQ", 2, 1), ("TQQQ", 2, 1)]
        assert any("TQQQ: buy of" in n and "max_orders_per_minute 2 over 1" in n for n in notes)

    run(scenario)


def test_orders_over_the_days_count_are_refused_counting_earlier_attempts(engine: Engine, tmp_path: Path) -> None:
    async def scenario() -> None:
        with sim_run(tmp_path) as sim:
            async with prepared(sim, engine, limits=OrderLimits(max_orders_per_day=3)) as live:
                first, _ = place(live, {"SSO": 0.05, "TQQQ": 0.05})
                await settled(live, sim)
                with engine.connect() as conn:
                    assert orders_sent(conn, SESSION) == 2  # what a retry seeds its count with
                live.send_gate.sent_today = 2 + 1  # as if an earlier attempt had sent one more
                second, _ = place(live, {"SSO": 0.1, "TQQQ": 0.1})
                await settled(live, sim)
                orders = broker_orders(sim)
        assert sorted(first) == ["SSO", "TQQQ"] and second == [] and len(orders) == 2
        assert live.report.orders_refused_by_limit == {"max_orders_per_day": 2}
        assert {(e["limit"], e["value"], e["bound"]) for e in refusals(engine)} == {("max_orders_per_day", 4, 3)}

    run(scenario)


def test_an_order_sized_far_from_the_last_trade_is_refused_by_the_collar(engine: Engine, tmp_path: Path) -> None:
    """The decided minute's close sizes the order; a bar of a later minute already streamed (the last trade)
    is 8% above it: the buy is refused, TQQQ (no newer trade) goes."""

    async def scenario() -> None:
        with sim_run(tmp_path) as sim:
            async with prepared(sim, engine, limits=OrderLimits(price_collar=0.05)) as live:
                price = live.portfolio.prices["SSO"]
                t = live.book.next_minute
                later = Bar("SSO", t, price * 1.08, price * 1.08, price * 1.08, price * 1.08, 100.0)
                assert live.feed.take(later, "stream", None, None)
                sent, _ = place(live, {"SSO": 0.05, "TQQQ": 0.05})
                await settled(live, sim)
                orders = broker_orders(sim)
        assert sent == ["TQQQ"] and [o.symbol for o in orders] == ["TQQQ"]
        [event] = refusals(engine)
        assert (event["symbol"], event["limit"], event["bound"]) == ("SSO", "price_collar", 0.05)
        assert event["value"] == pytest.approx(1 - 1 / 1.08, abs=1e-6)
        assert live.report.orders_refused_by_limit == {"price_collar": 1}

    run(scenario)


def test_reducing_lets_a_reducing_sell_out_and_holds_a_buy(engine: Engine, tmp_path: Path) -> None:
    async def scenario() -> None:
        with sim_run(tmp_path, ["--seed-position=SSO:100"]) as sim:
            async with prepared(sim, engine) as live:
                live.risk.follow("REDUCING", "operator", 0.0, None)
                sent, notes = place(live, {"SSO": 0.0, "TQQQ": 0.05})
                await settled(live, sim)
                orders = broker_orders(sim)
        assert sent == ["SSO"] and [(o.symbol, o.side.value, float(o.qty or 0)) for o in orders] == [
            ("SSO", "sell", 100.0)]
        assert live.report.orders_held == 1 and live.report.orders == 1
        assert any("held: the risk state is REDUCING" in n and "TQQQ buy" in n for n in notes)
        assert live.report.orders_refused_by_limit == {}

    run(scenario)


def test_halted_holds_every_order_until_active_again(engine: Engine, tmp_path: Path) -> None:
    async def scenario() -> None:
        with sim_run(tmp_path, ["--seed-position=SSO:100"]) as sim:
            async with prepared(sim, engine) as live:
                with pytest.raises(ValueError, match="risk state must be one of"):
                    live.risk.follow("PAUSED", "operator", 0.0, None)
                live.risk.follow("halted", "operator", 0.0, None)
                assert live.send_gate.closed(live.dispatch.market_now()) == "the risk state is HALTED"
                held, notes = place(live, {"SSO": 0.0, "TQQQ": 0.05})  # a sell that reduces is held too
                await asyncio.sleep(0.5)
                before = broker_orders(sim)
                live.risk.follow("ACTIVE", "operator", 0.0, None)
                sent, _ = place(live, {"SSO": 0.0, "TQQQ": 0.05})
                await settled(live, sim)
        assert held == [] and before == [] and live.report.orders_held == 2
        assert "2 order(s) held: the risk state is HALTED" in notes
        assert sorted(sent) == ["SSO", "TQQQ"]

    run(scenario)
