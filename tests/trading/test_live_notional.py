"""Notional buys through the live loop's parts, the order workers, alpaca-py and a simulator process: a buy of
a fractionable asset leaves as a DAY market order for dollars and fills a fraction of a share, the ``orders`` row
keeps the dollars and the shares expected, a pre-trade limit weighs the dollars, and the broker's refusal keeps
Alpaca's code and reason. A notional order still working when an attempt starts again (Alpaca says no qty for
it) is adopted as working for the shares its dollars buy.
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
from openbell.broker.ids import client_order_id
from openbell.policy import OrderLimits
from openbell.trading import TradingAttempt
from openbell.trading.portfolio import OrderIntent


def place(live: TradingAttempt, weights: dict[str, float]) -> tuple[list[OrderIntent], list[str]]:
    """One decision's orders sent as the decider sends them: (intents sent, notes)."""
    notes: list[str] = []
    placed = live.dispatch.place(live.seq, weights, notes, None, trade=True)
    live.seq += 1
    return [i for _, i in placed], notes


def test_a_notional_buy_fills_a_fraction_is_weighed_by_its_dollars_and_a_refusal_keeps_alpacas_words(
        engine: Engine, tmp_path: Path) -> None:
    async def scenario() -> None:
        with sim_run(tmp_path, ["--not-fractionable", "TQQQ"]) as sim:
            async with prepared(sim, engine, fractional=True, order_type="notional", min_notional=10.0,
                                limits=OrderLimits(max_order_notional=15_000.0)) as live:
                too_big, _ = place(live, {"SSO": 0.2})  # about 20k of 100k: over the limit
                [buy], _ = place(live, {"SSO": 0.1})
                await asyncio.sleep(0.3)
                await until(lambda: all(o.status.value == "filled" for o in broker_orders(sim)), "the buy fills")
                orders = broker_orders(sim)
                # the broker's flag changes: TQQQ taken as fractionable, the broker refuses its notional buy
                live.dispatch.policy = replace(live.dispatch.policy, fractional=frozenset({"SSO", "TQQQ"}))
                [refused], _ = place(live, {"SSO": 0.1, "TQQQ": 0.05})
                await until(lambda: live.report.rejected == 1, "the refusal is back")
                await flushed(live)
        assert too_big == [] and live.report.orders_refused_by_limit == {"max_order_notional": 1}
        [event] = [r[0] for r in rows(engine, "SELECT payload FROM events WHERE kind = 'order_refused'")]
        assert event["limit"] == "max_order_notional" and event["value"] > 15_000
        assert event["value"] == round(event["value"], 2)  # the dollars sent, not shares x price
        assert buy.notional is not None and buy.notional == round(buy.notional, 2) and 9_000 < buy.notional < 10_000
        [o] = orders
        assert (o.symbol, o.side.value, o.type.value, o.time_in_force.value) == ("SSO", "buy", "market", "day")
        assert o.qty is None and float(o.notional) == buy.notional  # dollars, no quantity
        filled = float(o.filled_qty)
        assert filled != int(filled) and filled * float(o.filled_avg_price) == pytest.approx(buy.notional, abs=0.01)
        [(qty, notional)] = rows(engine, "SELECT qty, notional FROM orders WHERE symbol = 'SSO'")
        assert float(qty) == pytest.approx(buy.qty) and float(notional) == buy.notional  # the shares expected
        assert refused.symbol == "TQQQ" and refused.notional is not None
        assert live.report.rejections_by_reason == {"not_fractionable": 1}
        [payload] = [r[0] for r in rows(engine, "SELECT payload FROM events WHERE kind = 'order_rejected'")]
        assert (payload["http_status"], payload["code"], payload["reason"]) == (
            422, 42210000, "requested asset is not fractionable")
        [(status, qty, notional)] = rows(engine, "SELECT status, qty, notional FROM orders WHERE symbol = 'TQQQ'")
        assert status == "rejected" and float(qty) == refused.qty and float(notional) == refused.notional

    run(scenario)


def test_a_notional_order_still_working_at_a_restart_is_adopted_for_the_shares_its_dollars_buy(
        engine: Engine, tmp_path: Path) -> None:
    coid = client_order_id(SESSION, 0, "SSO")

    async def scenario() -> None:
        with sim_run(tmp_path, ["--halt", "SSO:11:00-close"], start="11:05") as sim:  # held: it stays working
            sent = AlpacaBroker(sim.config()).submit_market(coid, "SSO", 2.0, "buy", notional=250.55)
            async with prepared(sim, engine, fractional=True, order_type="notional", min_notional=10.0) as live:
                working = live.portfolio.working.get(coid)
                price = live.portfolio.prices["SSO"]
                intents, notes = place(live, {"SSO": 0.0, "TQQQ": 0.0})
                await flushed(live)
        assert sent.outcome == "submitted" and sent.order is not None
        assert sent.order.qty is None and sent.order.notional == 250.55 and sent.order.status in ("new", "accepted")
        assert working is not None and working.signed_qty == pytest.approx(250.55 / price)
        assert live.portfolio.expected("SSO") == pytest.approx(250.55 / price)
        # its side is known: no sale against it while it works
        assert intents == [] and "SSO: order deferred, an opposite-side order is working" in notes
        [(status, notional)] = rows(engine, "SELECT status, notional FROM orders WHERE client_order_id = :c", c=coid)
        assert status in ("new", "accepted") and float(notional) == 250.55

    run(scenario)
