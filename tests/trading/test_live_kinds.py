"""A live attempt with every order kind against the simulator: fractional sizing of fractionable assets,
marketable limit orders, notional buys, short sales of shortable easy-to-borrow assets only; the liquidation
(while the loop runs, as the day's 15:58 task does) leaves the account flat with no order working."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from alpaca.trading.enums import QueryOrderStatus
from alpaca.trading.models import Order, Position
from alpaca.trading.requests import GetOrdersRequest
from sqlalchemy import Engine

from dates import SESSION
from live_parts import sim_run, store_history
from openbell.adapters.alpaca.broker import AlpacaBroker
from openbell.adapters.alpaca.venue import alpaca_venue
from openbell.broker.liquidate import LiquidationReport, liquidate
from openbell.calendar import session
from openbell.strategy import RiskLimits
from openbell.trading import AttemptReport, run_trading_attempt

UNIVERSE = ["SDS", "SSO", "TQQQ", "XLF"]


def _attempt(engine: Engine, tmp_path: Path, order_type: str
             ) -> tuple[AttemptReport, LiquidationReport, list[Order], list[Position], list[Order]]:
    """A LongShort attempt from 15:50 (market time at 60x: a loaded machine still decides every minute live)
    with fractions, short sales and ``order_type``, liquidated at 15:57: its report, the liquidation's, and the
    broker's orders, positions and open orders."""
    s = session(SESSION)
    assert s is not None
    args = ["--hard-to-borrow", "SDS", "--not-fractionable", "XLF"]
    with sim_run(tmp_path, args, speed=60, start="15:50") as sim:
        config = sim.config()
        clock = store_history(engine, config, UNIVERSE, lag=timedelta(minutes=1))
        cut_off = s.close - timedelta(minutes=3)
        liquidation: dict[str, LiquidationReport] = {}

        def liquidate_at_cut_off() -> None:
            while clock.now() < cut_off:
                time.sleep(0.05)
            liquidation["report"] = liquidate(AlpacaBroker(config), engine, SESSION, clock,
                                              deadline=s.close - timedelta(minutes=1))

        side = threading.Thread(target=liquidate_at_cut_off, daemon=True)
        side.start()
        report = run_trading_attempt(
            alpaca_venue(config), engine, SESSION, clock=clock, strategy_name="kinds_strategies:LongShort",
            params_override={}, universe=UNIVERSE, warmup_sessions=1, trade_until=cut_off,
            risk=RiskLimits(max_weight=0.4, daily_loss_limit=None, allow_short=True),
            fractional=True, order_type=order_type, limit_collar=0.002, min_notional=10.0,
        )
        side.join(30)
        client = config.trading_client()
        orders = client.get_orders(GetOrdersRequest(status=QueryOrderStatus.ALL, limit=500))
        positions = client.get_all_positions()
        still_open = client.get_orders(GetOrdersRequest(status=QueryOrderStatus.OPEN))
    return report, liquidation["report"], orders, positions, still_open  # type: ignore[return-value]


@pytest.mark.long
def test_fractional_limit_and_short_orders_trade_and_the_liquidation_ends_flat(engine: Engine, tmp_path: Path) -> None:
    report, liquidated, orders, positions, still_open = _attempt(engine, tmp_path, "limit")
    assert report.orders > 0
    # the terms it read, recorded for the day's replay: SDS hard to borrow, XLF not fractionable
    assert report.asset_terms == {"fractionable": ["SDS", "SSO", "TQQQ"], "shortable": ["SSO", "TQQQ", "XLF"]}
    limits = [o for o in orders if o.type == "limit"]
    assert limits and all(o.time_in_force == "day" and o.limit_price for o in limits)
    by_symbol = {(o.symbol, o.side.value) for o in limits}
    assert ("SSO", "buy") in by_symbol and ("XLF", "buy") in by_symbol and ("TQQQ", "sell") in by_symbol
    assert not [o for o in orders if o.symbol == "SDS"]  # hard to borrow: its short target was clipped to 0
    sso = [float(o.qty) for o in limits if o.symbol == "SSO" and o.side.value == "buy"]
    assert any(q != int(q) for q in sso)  # fractionable: sized in fractions
    assert all(float(o.qty) == int(float(o.qty)) for o in limits if o.symbol in ("XLF", "TQQQ"))
    assert liquidated.flat
    assert positions == [] and still_open == []


@pytest.mark.long
def test_notional_buys_of_fractionable_assets_fill_fractions_and_every_sale_goes_by_quantity(
        engine: Engine, tmp_path: Path) -> None:
    report, liquidated, orders, positions, still_open = _attempt(engine, tmp_path, "notional")
    assert report.orders > 0 and report.rejected == 0
    notional = [o for o in orders if o.notional is not None]
    assert notional and {o.symbol for o in notional} == {"SSO"}  # XLF is not fractionable, TQQQ is sold short
    for o in notional:
        assert (o.side.value, o.type.value, o.time_in_force.value, o.qty) == ("buy", "market", "day", None)
        assert float(o.notional) == round(float(o.notional), 2) and o.status.value == "filled"
    assert any(float(o.filled_qty) != int(float(o.filled_qty)) for o in notional)  # a fraction of a share
    by_qty = [o for o in orders if o.notional is None]
    assert all(o.qty is not None for o in by_qty) and {(o.symbol, o.side.value) for o in by_qty} >= {
        ("XLF", "buy"), ("TQQQ", "sell"), ("SSO", "sell")}  # the liquidation sells SSO by its exact quantity
    assert all(float(o.qty) == int(float(o.qty)) for o in by_qty if o.symbol in ("XLF", "TQQQ"))
    assert liquidated.flat and positions == [] and still_open == []
