"""The broker's refusals in the live loop: recorded with Alpaca's code and message, counted by kind, never
sent again in a loop; buys fit the buying power; a halted symbol gets no order.

A real simulator (its market at 1x) and a real Postgres; the session is prepared as ``TradingAttempt.run``
prepares it, then each test places decisions through the dispatcher as the decider does.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from alpaca.trading.enums import OrderSide, TimeInForce
from alpaca.trading.requests import MarketOrderRequest
from sqlalchemy import Engine

from dates import SESSION
from live_parts import broker_orders, prepared, rows, run, sim_run, until
from live_parts import flushed as settled
from openbell.adapters.alpaca.convert import rejected_result
from openbell.broker import client_order_id, is_ours, parse_client_order_id
from openbell.broker.ids import is_resized, resized_order_id
from openbell.policy import OrderIntent, OrderPolicy
from openbell.trading import TradingAttempt
from openbell.trading.sender import OrderJob


async def place(live: TradingAttempt, weights: dict[str, float], *, trade: bool = True) -> tuple[list[str], list[str]]:
    """One decision's orders sent as the decider sends them (none unless ``trade``); (client order ids, notes)."""
    notes: list[str] = []
    placed = live.dispatch.place(live.seq, weights, notes, None, trade=trade)
    live.seq += 1
    return [c for c, _ in placed], notes


async def answered(live: TradingAttempt, count: int) -> None:
    """``count`` refusals in, and the orders still working settled."""
    await until(lambda: live.report.rejected >= count, f"{count} refusal(s)")
    await asyncio.sleep(0.3)  # a resize or a second answer, if one were coming


def rejection_events(engine: Engine) -> list[dict[str, Any]]:
    return [r[0] for r in rows(engine, "SELECT payload FROM events WHERE kind = 'order_rejected' ORDER BY id")]


# -- the adapter's reading of a refusal ---------------------------------------------------------------


@pytest.mark.parametrize(("status", "body", "kind"), [
    (403, '{"buying_power":"176531.28","code":40310000,"cost_basis":"48640000","message":"insufficient buying power"}',
     "buying_power"),
    (403, '{"code":40310000,"message":"insufficient day trading buying power"}', "buying_power"),
    (403, '{"code":40310000,"message":"potential wash trade detected. use complex orders"}', "wash_trade"),
    (422, '{"code":40310000,"message":"potential wash trade detected. use complex orders"}', "wash_trade"),
    (422, '{"code":42210000,"message":"asset TQQQ is not tradable"}', "not_tradable"),
    (422, '{"code":40010001,"message":"asset \\"XYZ\\" not found"}', "not_tradable"),
    (422, '{"code":42210000,"message":"requested asset is not fractionable"}', "not_fractionable"),
    (403, '{"code":40310000,"message":"account is not authorized to trade"}', "trading_blocked"),
    (403, '{"code":40310000,"message":"insufficient qty available for order (requested: 5, available: 0)"}', "other"),
    (422, "not json at all", "other"),
])
def test_a_refusal_keeps_the_brokers_code_and_message_and_is_classified(status: int, body: str, kind: str) -> None:
    parsed = json.loads(body) if body.startswith("{") else {"message": body, "code": None}
    reason = parsed["message"]
    result = rejected_result("ob-20251120-000001-SSO", body, reason, status)
    assert (result.outcome, result.refusal, result.reason, result.http_status) == ("rejected", kind, reason, status)
    assert result.code == parsed["code"]
    assert result.buying_power == (176531.28 if "176531" in body else None)


def test_a_resized_order_id_derives_from_the_first_and_is_still_ours() -> None:
    first = client_order_id(SESSION, 42, "BRK.B")
    resized = resized_order_id(first)
    assert resized == "ob-20251120-000042-BRK.B-r" and is_ours(resized, SESSION)
    assert parse_client_order_id(resized) == parse_client_order_id(first)
    assert is_resized(resized) and not is_resized(first)
    with pytest.raises(ValueError):
        resized_order_id(resized)  # never a resize of a resize
    with pytest.raises(ValueError):
        resized_order_id("4f3c2b1a-manual")


def test_buys_are_scaled_together_to_the_budget_and_sells_kept() -> None:
    intents = [OrderIntent("A", "sell", 10, 0.0), OrderIntent("B", "buy", 100, 0.5), OrderIntent("C", "buy", 3, 0.1)]
    prices = {"A": 50.0, "B": 10.0, "C": 100.0}
    fitted, notes = OrderPolicy(min_notional=150.0).fit(intents, prices, 650.0)  # buys cost 1300
    assert [(i.symbol, i.side, i.qty) for i in fitted] == [("A", "sell", 10), ("B", "buy", 50)]
    assert len(notes) == 2 and "C: buy of 3 dropped" in notes[1]
    assert OrderPolicy().fit(intents, prices, 5000.0) == (tuple(intents), ())


# -- the live loop against the simulator --------------------------------------------------------------


def test_an_order_too_large_for_the_buying_power_is_resized_once(engine: Engine, tmp_path: Path) -> None:
    """Nothing known of the buying power yet: the order leaves as wanted, the broker refuses it with its
    buying power, and one smaller order goes under the derived id."""

    async def scenario() -> None:
        with sim_run(tmp_path, ["--cash=10000"]) as sim:
            async with prepared(sim, engine) as live:
                price = live.portfolio.prices["SSO"]
                coids, _ = await place(live, {"SSO": 2.5, "TQQQ": 0.0})  # 25k on a 20k buying power
                resized = resized_order_id(coids[0])
                await answered(live, 1)
                client = sim.config().trading_client()
                await until(lambda: client.get_order_by_client_id(resized).status.value == "filled", "filled")
                _, notes = await place(live, {}, trade=False)
                await settled(live)
                orders = broker_orders(sim)
        assert [o.client_order_id for o in orders] == [resized]
        assert float(orders[0].qty or 0) == math.floor(20_000 * 0.97 / price)
        assert rows(engine, "SELECT status, reject_reason FROM orders WHERE client_order_id = :c", c=coids[0]) == [
            ("rejected", "insufficient buying power")]
        [event] = rejection_events(engine)
        assert (event["refusal"], event["code"], event["http_status"]) == ("buying_power", 40310000, 403)
        [resize] = [r[0] for r in rows(engine, "SELECT payload FROM events WHERE kind = 'order_resized'")]
        assert resize["resized_client_order_id"] == resized and resize["buying_power"] == 20_000
        assert live.report.rejections_by_reason == {"buying_power": 1}
        assert live.report.orders_resized == 1
        assert any("resized from" in n for n in notes) and any("buying_power" in n for n in notes)

    run(scenario)


def test_a_resized_order_refused_again_is_not_resized_twice(engine: Engine, tmp_path: Path) -> None:
    """The buying power is spent elsewhere before the resized order arrives: it is refused too, and that
    is the end of it."""

    async def scenario() -> None:
        with sim_run(tmp_path, ["--cash=10000"]) as sim:
            async with prepared(sim, engine) as live:
                client = sim.config().trading_client()
                sender = live.dispatch.sender
                forward = sender.submit_all
                spend = math.floor(19_000 / live.portfolio.prices["TQQQ"])  # of the 20k buying power

                def spend_first(items: Sequence[tuple[OrderJob, Any]]) -> None:
                    if any(is_resized(job.client_order_id) for job, _ in items):  # another app buys first
                        client.submit_order(MarketOrderRequest(symbol="TQQQ", qty=spend, side=OrderSide.BUY,
                                                               time_in_force=TimeInForce.DAY))
                    forward(items)

                sender.submit_all = spend_first  # type: ignore[method-assign]
                await place(live, {"SSO": 2.5})
                await answered(live, 2)
                _, notes = await place(live, {}, trade=False)
                orders = broker_orders(sim)
        ours = [o.client_order_id for o in orders if is_ours(o.client_order_id)]
        assert ours == []
        assert live.report.rejections_by_reason == {"buying_power": 2}
        assert live.report.orders_resized == 1 and live.report.rejected == 2
        assert any("the resized buy was refused too" in n for n in notes)

    run(scenario)


def test_buys_are_scaled_to_the_buying_power_before_they_leave(engine: Engine, tmp_path: Path) -> None:
    async def scenario() -> None:
        with sim_run(tmp_path, ["--cash=10000"]) as sim:
            async with prepared(sim, engine) as live:
                await asyncio.to_thread(live.dispatch.read_buying_power)
                await until(lambda: live.portfolio.buying_power() is not None, "the buying power is known")
                assert live.portfolio.buying_power() == pytest.approx(20_000)
                price = live.portfolio.prices["SSO"]
                coids, notes = await place(live, {"SSO": 2.5})
                client = sim.config().trading_client()
                await until(lambda: client.get_order_by_client_id(coids[0]).status.value == "filled", "filled")
                orders = broker_orders(sim)
        assert abs(float(orders[0].qty or 0) - 19_800 / price) < 1  # 99% of the 20k buying power
        assert live.report.orders_scaled == 1 and live.report.rejected == 0
        assert any("to fit the buying power" in n for n in notes)

    run(scenario)


def test_a_wash_trade_refusal_is_recorded_and_not_resent(engine: Engine, tmp_path: Path) -> None:
    """Another app's sell of SSO is working (SSO is halted at the venue, so it waits): our buy is refused
    as a potential wash trade and nothing is sent again in that decision."""

    async def scenario() -> None:
        args = ["--seed-position=SSO:100", "--halt=SSO:10:30-close"]
        with sim_run(tmp_path, args) as sim:
            async with prepared(sim, engine) as live:
                client = sim.config().trading_client()
                client.submit_order(MarketOrderRequest(symbol="SSO", qty=10, side=OrderSide.SELL,
                                                       time_in_force=TimeInForce.DAY))
                coids, _ = await place(live, {"SSO": 0.5})
                await answered(live, 1)
                _, notes = await place(live, {}, trade=False)
                orders = broker_orders(sim)
        assert coids and all(o.client_order_id != coids[0] for o in orders)
        assert live.report.rejections_by_reason == {"wash_trade": 1}
        assert live.report.orders_resized == 0
        [event] = rejection_events(engine)
        assert event["refusal"] == "wash_trade" and event["code"] == 40310000
        assert any("wash_trade" in n and "decided again on the next minute" in n for n in notes)

    run(scenario)


def test_a_symbol_refused_as_not_tradable_gets_no_second_order(engine: Engine, tmp_path: Path) -> None:
    async def scenario() -> None:
        with sim_run(tmp_path, ["--not-tradable=TQQQ"]) as sim:
            async with prepared(sim, engine) as live:
                first, _ = await place(live, {"TQQQ": 0.3})
                await answered(live, 1)
                second, notes = await place(live, {"TQQQ": 0.3, "SSO": 0.2})
                await answered(live, 1)
                await settled(live)
                orders = broker_orders(sim)
        assert len(first) == 1 and [parse_client_order_id(c).symbol for c in second] == ["SSO"]  # type: ignore[union-attr]
        assert [o.symbol for o in orders] == ["SSO"]
        assert live.report.rejections_by_reason == {"not_tradable": 1} and live.report.orders_barred == 1
        assert any("TQQQ: no buy sent, the broker refused it earlier today" in n for n in notes)
        [event] = rejection_events(engine)
        assert (event["refusal"], event["http_status"], event["code"]) == ("not_tradable", 422, 42210000)

    run(scenario)


def test_a_symbol_refused_as_not_fractionable_gets_no_second_order(engine: Engine, tmp_path: Path) -> None:
    """A fractional buy (sent as a decision's order would be) is refused; the symbol and side are barred."""

    async def scenario() -> None:
        with sim_run(tmp_path, ["--not-fractionable=TQQQ"]) as sim:
            async with prepared(sim, engine) as live:
                seq = live.seq
                live.seq += 1
                coid = client_order_id(SESSION, seq, "TQQQ")
                intent = OrderIntent("TQQQ", "buy", 1.5, 0.01)
                live.portfolio.add_working(coid, intent, seq)
                live.dispatch.sender.submit_all([(OrderJob(coid, "TQQQ", 1.5, "buy"), (seq, intent, None))])
                await answered(live, 1)
                placed, notes = await place(live, {"TQQQ": 0.3})
                await settled(live)
                orders = broker_orders(sim)
        assert placed == [] and orders == []
        assert live.report.rejections_by_reason == {"not_fractionable": 1} and live.report.orders_barred == 1
        assert any("not_fractionable: requested asset is not fractionable" in n for n in notes)
        assert rows(engine, "SELECT reject_reason FROM orders WHERE client_order_id = :c", c=coid) == [
            ("requested asset is not fractionable",)]

    run(scenario)


def test_a_symbol_whose_short_sale_was_refused_is_sold_short_no_more(engine: Engine, tmp_path: Path) -> None:
    """The asset's terms said shortable in the morning; the broker refuses a short sale now (no longer easy
    to borrow): no second short sale of it today, however often the strategy still wants one."""

    async def scenario() -> None:
        with sim_run(tmp_path, ["--hard-to-borrow=TQQQ"]) as sim:
            async with prepared(sim, engine) as live:
                first, _ = await place(live, {"TQQQ": -0.1})
                await answered(live, 1)
                second, notes = await place(live, {"TQQQ": -0.1, "SSO": 0.2})
                await answered(live, 1)
                await settled(live)
                orders = broker_orders(sim)
        assert len(first) == 1 and [parse_client_order_id(c).symbol for c in second] == ["SSO"]  # type: ignore[union-attr]
        assert [o.symbol for o in orders] == ["SSO"]
        assert live.report.rejections_by_reason == {"not_shortable": 1} and live.report.orders_barred == 1
        assert any("TQQQ: no short sale sent, the broker refused one earlier today" in n for n in notes), notes
        [event] = rejection_events(engine)
        assert event["refusal"] == "not_shortable"

    run(scenario)


def test_a_blocked_account_stops_every_new_order(engine: Engine, tmp_path: Path) -> None:
    async def scenario() -> None:
        with sim_run(tmp_path, ["--trading-blocked"]) as sim:
            async with prepared(sim, engine) as live:
                first, _ = await place(live, {"SSO": 0.2, "TQQQ": 0.2})
                await answered(live, 2)
                second, notes = await place(live, {"SSO": 0.2, "TQQQ": 0.2})
                await settled(live)
                orders = broker_orders(sim)
        assert len(first) == 2 and second == [] and orders == []
        assert live.report.rejections_by_reason == {"trading_blocked": 2}
        assert live.report.trading_blocked == "account is not authorized to trade"
        assert live.report.orders_held == 2
        assert any("held: the broker blocks trading on the account" in n for n in notes)
        blocked = rows(engine, "SELECT payload FROM events WHERE kind = 'trading_blocked'")
        assert len(blocked) == 1 and blocked[0][0]["code"] == 40310000

    run(scenario)


def test_a_halted_symbol_gets_no_order_until_it_resumes(engine: Engine, tmp_path: Path) -> None:
    async def scenario() -> None:
        with sim_run(tmp_path) as sim:
            async with prepared(sim, engine) as live:
                live.send_gate.halted.add("SSO")
                first, notes = await place(live, {"SSO": 0.2, "TQQQ": 0.2})
                live.send_gate.halted.discard("SSO")  # the statuses stream says it trades again
                second, _ = await place(live, {"SSO": 0.2, "TQQQ": 0.2})
                await asyncio.sleep(0.5)
                orders = broker_orders(sim)
        assert [parse_client_order_id(c).symbol for c in first] == ["TQQQ"]  # type: ignore[union-attr]
        assert [parse_client_order_id(c).symbol for c in second] == ["SSO"]  # type: ignore[union-attr]
        assert sorted(o.symbol for o in orders) == ["SSO", "TQQQ"]
        assert live.report.orders_halted == 1 and live.report.rejected == 0
        assert "SSO: no buy sent, trading in it is halted" in notes

    run(scenario)
