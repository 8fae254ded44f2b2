"""The send gate, one test per rule, in memory: no simulator process, no Postgres, no order worker."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from openbell.policy import OrderIntent, OrderLimits
from openbell.ports import Deadline
from openbell.risk.gate import GatedDeadline, GateLatch, Held, SendGate
from openbell.risk.owner import RiskOwner
from openbell.strategy import RiskGate, RiskLimits

CUT_OFF = datetime(2025, 11, 20, 20, 58, tzinfo=UTC)  # 15:58 ET
NOW = CUT_OFF - timedelta(hours=1)
PRICES = {"SSO": 100.0, "TQQQ": 50.0}
BUY = OrderIntent("SSO", "buy", 10, 0.1)
SELL = OrderIntent("TQQQ", "sell", 20, 0.0)


def gate(limits: OrderLimits | None = None, *, winding_down: bool = False,
         last: dict[str, float] | None = None) -> SendGate:
    risk = RiskOwner(RiskGate(RiskLimits()))
    return SendGate(risk, limits or OrderLimits(), trade_until=CUT_OFF, winding_down=lambda: winding_down,
                    last_prices=last)


def holding(positions: dict[str, float]) -> Callable[[str], float]:
    return lambda s: positions.get(s, 0.0)


def admit(g: SendGate, *intents: OrderIntent, now: datetime = NOW,
          positions: dict[str, float] | None = None) -> tuple[list[OrderIntent], list[Held]]:
    return g.admit(list(intents), prices=PRICES, holding=holding(positions or {"TQQQ": 20.0}), now=now)


def test_an_open_gate_lets_every_order_leave() -> None:
    kept, held = admit(gate(), SELL, BUY)
    assert kept == [SELL, BUY] and held == []


@pytest.mark.parametrize(("close", "reason"), [
    (lambda g: g.liquidate(), "the session is liquidating"),
    (lambda g: g.block("account blocked"), "the broker blocks trading on the account (account blocked)"),
    (lambda g: g.refuse_credentials("401"), "the broker refused the credentials (401)"),
    (lambda g: g.risk.follow("HALTED", "operator", 0.0, NOW), "the risk state is HALTED"),
])
def test_a_closed_gate_holds_every_order_closes_included(close: Callable[[SendGate], object], reason: str) -> None:
    g = gate()
    told: list[str | None] = []
    g.listen(told.append)
    close(g)
    kept, held = admit(g, SELL, BUY)
    assert kept == [] and [(h.intent, h.rule, h.note) for h in held] == [(SELL, "closed", reason),
                                                                          (BUY, "closed", reason)]
    assert told == [reason]  # the workers are told once


def test_the_stored_phase_winding_down_closes_the_gate() -> None:
    kept, held = admit(gate(winding_down=True), SELL)
    assert kept == [] and held[0].note == "the session is liquidating"


def test_at_the_trading_cut_off_nothing_leaves() -> None:
    kept, held = admit(gate(), SELL, now=CUT_OFF - timedelta(seconds=2))
    assert kept == [] and "is at the trading cut-off" in held[0].note
    kept, _ = admit(gate(), SELL, now=CUT_OFF - timedelta(seconds=3))
    assert kept == [SELL]


def test_a_halted_symbol_gets_no_order_until_it_resumes() -> None:
    g = gate()
    g.halted.add("SSO")
    kept, held = admit(g, SELL, BUY)
    assert kept == [SELL] and [(h.intent, h.rule) for h in held] == [(BUY, "symbol_halted")]
    g.halted.discard("SSO")
    assert admit(g, BUY)[0] == [BUY]


def test_a_symbol_and_side_the_broker_barred_gets_no_second_order() -> None:
    g = gate()
    g.bar("SSO", "buy", "not_tradable: asset is not tradable")
    kept, held = admit(g, BUY, OrderIntent("SSO", "sell", 1, 0.0), positions={"SSO": 5.0})
    assert [i.side for i in kept] == ["sell"] and held[0].rule == "barred"
    assert "asset is not tradable" in held[0].note


def test_a_symbol_whose_short_sale_the_broker_refused_gets_no_short_sale_but_its_closes_leave() -> None:
    g = gate()
    g.bar_shorts("TQQQ", "not_shortable: asset TQQQ cannot be sold short")
    close = OrderIntent("TQQQ", "sell", 20, 0.0)
    opens_short = OrderIntent("TQQQ", "sell", 5, -0.05)
    kept, held = admit(g, close, positions={"TQQQ": 20.0})
    assert kept == [close] and held == []  # a sale of what is held is no short sale
    kept, held = admit(g, opens_short, positions={"TQQQ": 0.0})
    assert kept == [] and [(h.intent, h.rule) for h in held] == [(opens_short, "barred")]
    assert "no short sale" in held[0].note and "cannot be sold short" in held[0].note
    kept, held = admit(g, opens_short, positions={"TQQQ": -5.0})  # adding to a short already held
    assert kept == [] and held[0].rule == "barred"
    cover = OrderIntent("TQQQ", "buy", 5, 0.0)
    assert admit(g, cover, positions={"TQQQ": -5.0})[0] == [cover]


def test_reducing_lets_only_orders_that_shrink_a_position_leave() -> None:
    g = gate()
    g.risk.follow("REDUCING", "operator", 0.0, NOW)
    through_zero = OrderIntent("TQQQ", "sell", 30, -0.1)
    kept, held = admit(g, BUY, through_zero)
    assert kept == [OrderIntent("TQQQ", "sell", 20.0, -0.1)]  # cut to close the position, not to turn it short
    assert [(h.intent, h.rule) for h in held] == [(BUY, "reducing")]


def test_a_pre_trade_limit_refuses_an_order_that_adds_but_never_one_that_only_reduces() -> None:
    g = gate(OrderLimits(max_order_notional=500.0))
    big_close = OrderIntent("TQQQ", "sell", 20, 0.0)  # 1,000 of notional, closing
    kept, held = admit(g, big_close, BUY)
    assert kept == [big_close]
    assert held[0].rule == "limit" and held[0].refused is not None
    refused = held[0].refused
    assert (refused.limit, refused.value, refused.bound) == ("max_order_notional", 1000.0, 500.0)


def test_the_limit_check_returns_what_it_holds_and_changes_no_list_it_is_given() -> None:
    g = gate(OrderLimits(max_order_notional=500.0))
    big_close = OrderIntent("TQQQ", "sell", 20, 0.0)
    intents = [big_close, BUY]
    kept, held = g._within_limits(intents, PRICES, holding({"TQQQ": 20.0}), NOW)
    assert intents == [big_close, BUY]
    assert kept == [big_close] and [(h.intent, h.rule) for h in held] == [(BUY, "limit")]
    assert g.sent_today == 1


def test_the_rate_limits_count_admitted_orders_in_market_time() -> None:
    g = gate(OrderLimits(max_orders_per_minute=1, max_orders_per_day=2))
    buy = OrderIntent("SSO", "buy", 1, 0.01)
    assert admit(g, buy)[0] == [buy]
    kept, held = admit(g, buy, now=NOW + timedelta(seconds=30))
    assert kept == [] and held[0].refused is not None and held[0].refused.limit == "max_orders_per_minute"
    assert admit(g, buy, now=NOW + timedelta(minutes=1))[0] == [buy]
    kept, held = admit(g, buy, now=NOW + timedelta(minutes=2))
    assert kept == [] and held[0].refused is not None and held[0].refused.limit == "max_orders_per_day"


def test_the_price_collar_compares_with_the_last_trade() -> None:
    g = gate(OrderLimits(price_collar=0.01), last={"SSO": 103.0})
    kept, held = admit(g, BUY)
    assert kept == [] and held[0].refused is not None and held[0].refused.limit == "price_collar"


def test_a_job_in_a_worker_is_not_sent_once_the_gate_closes_nor_past_the_cut_off() -> None:
    latch = GateLatch()
    ahead = GatedDeadline(CUT_OFF, time.time() + 60, latch)
    assert ahead.refusal() is None and ahead.refusal(wait=30) is None
    assert "would pass" in (ahead.refusal(wait=61) or "")
    latch.set("the risk state is HALTED")
    assert ahead.refusal() == "the send gate closed before it was sent: the risk state is HALTED"
    latch.set(None)  # a resume opens it again
    assert ahead.refusal() is None
    assert Deadline(CUT_OFF, time.time() - 1).refusal() is not None


def test_a_restored_halt_reaches_the_listeners_on_refresh() -> None:
    g = gate()
    told: list[str | None] = []
    g.listen(told.append)
    g.risk.restore("HALTED", "loss_stop", "daily loss", 0.0)
    assert told == []  # a restore announces nothing by itself
    g.refresh()
    g.refresh()
    assert told == ["the risk state is HALTED"]


def test_a_change_of_the_risk_state_reaches_the_listeners_through_refresh() -> None:
    g = gate()
    refreshed: list[str | None] = []
    told: list[str | None] = []
    g.listen(told.append)
    plain = g.refresh

    def refresh() -> None:
        plain()
        refreshed.append(g.standing())

    g.refresh = refresh  # type: ignore[method-assign]
    g.risk.follow("HALTED", "operator", 0.0, NOW)
    assert refreshed == told == ["the risk state is HALTED"]


def test_the_gate_tells_its_listeners_when_it_opens_again() -> None:
    g = gate()
    told: list[str | None] = []
    g.listen(told.append)
    g.risk.follow("HALTED", "operator", 0.0, NOW)
    g.risk.follow("ACTIVE", "operator", 0.0, NOW)
    assert told == ["the risk state is HALTED", None]
