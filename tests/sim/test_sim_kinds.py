"""Alpaca's order kinds in the simulator: fractional and notional orders (DAY only, fractionable assets),
limit orders (filled once the price reaches the limit, at the limit or better, expired at the close) and short
sales (shortable and easy-to-borrow assets, whole shares), refused with Alpaca's codes; the liquidation
closes every kind."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alpaca.common.exceptions import APIError
from alpaca.trading.enums import OrderSide, OrderStatus, TimeInForce
from alpaca.trading.requests import LimitOrderRequest
from sim_helpers import order, wait_status, within_rate_limit

from openbell.sim.broker import AssetFlags, Broker
from openbell.sim.errors import ApiError
from openbell.sim.store import StateStore
from openbell.sim.testing import SimProcess


class _Market:
    """An open market whose prices the test sets."""

    def __init__(self) -> None:
        self.prices = {"AAA": 50.0, "BBB": 20.0}
        self.open = True

    def now(self) -> datetime:
        return datetime(2025, 11, 20, 15, 0, tzinfo=UTC)

    def is_open(self) -> bool:
        return self.open

    def price(self, symbol: str) -> float | None:
        return self.prices.get(symbol)

    def prev_close(self, symbol: str) -> float | None:
        return self.prices.get(symbol)

    def known(self, symbol: str) -> bool:
        return symbol in self.prices

    def exchange(self, symbol: str) -> str:
        return "NYSE"

    def halted(self, symbol: str) -> bool:
        return False


def _limit(symbol: str, side: str, qty: float, price: float, cid: str, tif: str = "day") -> dict[str, object]:
    return {"symbol": symbol, "side": side, "qty": qty, "type": "limit", "limit_price": price,
            "time_in_force": tif, "client_order_id": cid}


def test_a_limit_order_fills_only_once_the_price_reaches_it_at_the_limit_or_better(tmp_path: Path) -> None:
    market = _Market()
    broker = Broker(StateStore(tmp_path), market, slippage_bps=10)
    buy = broker.submit(_limit("AAA", "buy", 2, 49.5, "b"))
    sell = broker.submit(_limit("BBB", "sell", 3, 20.5, "s"))  # a short sale
    assert buy["type"] == "limit" and buy["limit_price"] == "49.5" and sell["position_intent"] == "sell_to_open"
    broker.fill_working()
    assert [broker.orders[o["id"]]["status"] for o in (buy, sell)] == ["new", "new"]
    market.prices.update(AAA=49.6, BBB=20.4)  # not there yet
    assert broker.fill_working() is False  # resting limits are re-checked each minute, not polled
    assert len(broker.working()) == 2
    market.prices.update(AAA=49.3, BBB=21.0)  # crossed
    broker.fill_working()
    b, s = broker.orders[buy["id"]], broker.orders[sell["id"]]
    assert b["status"] == s["status"] == "filled"
    assert float(b["filled_avg_price"]) == pytest.approx(49.3 * 1.001, abs=1e-4)  # better than the limit
    assert float(s["filled_avg_price"]) == pytest.approx(21.0 * 0.999, abs=1e-4)
    assert broker.positions["AAA"]["qty"] == 2 and broker.positions["BBB"]["qty"] == -3
    market.prices["AAA"] = 49.33
    edge = broker.submit(_limit("AAA", "buy", 1, 49.35, "edge"))  # slippage would pass the limit: capped at it
    broker.fill_working()
    assert broker.orders[edge["id"]]["filled_avg_price"] == "49.35"


def test_a_working_limit_order_expires_at_the_close(tmp_path: Path) -> None:
    market = _Market()
    broker = Broker(StateStore(tmp_path), market)
    o = broker.submit(_limit("AAA", "buy", 0.5, 40.0, "frac-limit"))  # fractional limit, DAY
    assert broker.expire_day_orders(datetime(2025, 11, 20, 21, 0, tzinfo=UTC)) == 1
    assert broker.orders[o["id"]]["status"] == "expired" and not broker.positions


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"qty": 0.5, "time_in_force": "gtc"}, 422, "fractional orders must be DAY orders"),
        ({"notional": 100, "type": "limit", "limit_price": 50}, 422, "notional orders must be market orders"),
        ({"qty": 1, "type": "limit"}, 422, "limit_price is required for limit orders"),
        ({"qty": 1, "type": "limit", "limit_price": 50.123}, 422,
         "invalid limit_price 50.123. sub-penny increment does not fulfill minimum pricing criteria"),
        ({"qty": 1, "limit_price": 50}, 422, "limit_price is not allowed for market orders"),
        ({"qty": 1, "side": "sell", "symbol": "BBB"}, 422, "asset BBB cannot be sold short"),
        ({"qty": 1, "side": "sell", "symbol": "AAA"}, 422, "asset AAA cannot be sold short"),
        ({"qty": 0.5, "side": "sell"}, 403, "fractional orders are not allowed to short"),
        ({"notional": 100, "side": "sell"}, 403, "fractional orders are not allowed to short"),
        ({"notional": 0.99}, 403, "cost basis must be >= 1"),  # Alpaca's least order in dollars
    ],
)
def test_what_alpaca_refuses_is_refused_with_its_code(tmp_path: Path, body: dict[str, object], status: int,
                                                       message: str) -> None:
    market = _Market()
    market.prices["CCC"] = 10.0
    broker = Broker(StateStore(tmp_path), market, assets=AssetFlags(not_shortable=["BBB"], hard_to_borrow=["AAA"]))
    full = {"symbol": "CCC", "side": "buy", "type": "market", "time_in_force": "day", **body}
    with pytest.raises(ApiError) as exc:
        broker.submit(full)
    assert (exc.value.status, exc.value.code, exc.value.message) == (status, 40310000 if status == 403 else 42210000,
                                                                     message)
    assert not broker.orders


@pytest.fixture(scope="module")
def kinds_sim() -> Iterator[SimProcess]:
    """An open market (09:31 ET, 60x): XLE not shortable, SDS hard to borrow, XLF not fractionable."""
    args = ["--not-shortable", "XLE", "--hard-to-borrow", "SDS", "--not-fractionable", "XLF"]
    with SimProcess(speed=60, start="09:31", extra_args=args) as sim:
        yield sim
        within_rate_limit(sim)


def _refused(call: object, *args: object) -> tuple[int, int, str]:
    with pytest.raises(APIError) as exc:
        call(*args)  # type: ignore[operator]
    return exc.value.status_code, exc.value.code, exc.value.message


def test_assets_say_whether_they_are_shortable_easy_to_borrow_and_fractionable(kinds_sim: SimProcess) -> None:
    tc = kinds_sim.config().trading_client()
    flags = {s: (a.shortable, a.easy_to_borrow, a.fractionable)
             for s in ("XLE", "SDS", "XLF", "SPY") for a in [tc.get_asset(s)]}
    assert flags == {"XLE": (False, False, True), "SDS": (True, False, True), "XLF": (True, True, False),
                     "SPY": (True, True, True)}


def test_every_kind_is_accepted_through_alpaca_py_and_the_liquidation_closes_them_all(kinds_sim: SimProcess) -> None:
    tc = kinds_sim.config().trading_client()
    assert _refused(tc.submit_order, order("XLE", side="sell", qty=2)) == (422, 42210000,
                                                                           "asset XLE cannot be sold short")
    assert _refused(tc.submit_order, order("SDS", side="sell", qty=2)) == (422, 42210000,
                                                                           "asset SDS cannot be sold short")
    frac = tc.submit_order(order("SPY", qty=0.123456789, cid="frac"))
    notional = tc.submit_order(order("QQQ", notional=250.55, cid="notional"))
    short = tc.submit_order(order("TQQQ", side="sell", qty=3, cid="short"))
    marketable = tc.submit_order(LimitOrderRequest(symbol="IWM", qty=1.5, side=OrderSide.BUY, limit_price=10_000,
                                                   time_in_force=TimeInForce.DAY, client_order_id="marketable"))
    resting = tc.submit_order(LimitOrderRequest(symbol="XLF", qty=2, side=OrderSide.BUY, limit_price=1.0,
                                                time_in_force=TimeInForce.DAY, client_order_id="resting"))
    for o in (frac, notional, short, marketable):
        assert wait_status(tc, o.id, OrderStatus.FILLED).status == OrderStatus.FILLED, o.client_order_id
    filled = tc.get_order_by_id(marketable.id)
    assert float(filled.filled_avg_price) < 10_000 and filled.limit_price == "10000"
    assert tc.get_order_by_id(resting.id).status == OrderStatus.NEW
    held = {p.symbol: p.qty for p in tc.get_all_positions()}
    assert held["SPY"] == "0.123456789" and held["TQQQ"] == "-3" and held["IWM"] == "1.5"
    assert 0 < float(held["QQQ"]) < 1
    assert all(r.status == 200 for r in tc.close_all_positions(cancel_orders=True))
    assert tc.get_order_by_id(resting.id).status == OrderStatus.CANCELED
    deadline = time.monotonic() + 5
    while tc.get_all_positions() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert tc.get_all_positions() == []


def test_a_limit_day_order_still_working_at_the_close_expires() -> None:
    with SimProcess(speed=120, start="15:59") as sim:
        tc = sim.config().trading_client()
        o = tc.submit_order(LimitOrderRequest(symbol="SPY", qty=1, side=OrderSide.BUY, limit_price=1.0,
                                              time_in_force=TimeInForce.DAY, client_order_id="too-low"))
        assert wait_status(tc, o.id, OrderStatus.EXPIRED, timeout=10).status == OrderStatus.EXPIRED
        assert tc.get_all_positions() == []
