"""A whole simulated session through a real Airflow scheduler (LocalExecutor), triggerer and api-server.

The scheduler creates the session's run from the NYSE timetable; the simulator plays the day at 120x.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import replace
from datetime import datetime, time
from pathlib import Path
from typing import Any

import pytest

from e2e.test_drills import short_tokens_held
from openbell.calendar import ET
from openbell.runtime.drills import DRILLS, run_in_scratch
from openbell.runtime.rehearsal import DayResult
from openbell.sim.testing import SimProcess

pytestmark = pytest.mark.e2e
log = logging.getLogger(__name__)

def _broker_view(sim: SimProcess) -> dict[str, Any]:
    client = sim.config().trading_client()
    from alpaca.trading.enums import QueryOrderStatus
    from alpaca.trading.requests import GetOrdersRequest

    orders = client.get_orders(GetOrdersRequest(status=QueryOrderStatus.ALL, limit=500, nested=False))
    return {
        "client_order_ids": [o.client_order_id for o in orders],
        "orders": [o.model_dump(mode="json") for o in orders],
        "positions": {p.symbol: float(p.qty) for p in client.get_all_positions()},
    }


STRATEGIES = Path(__file__).parents[1] / "strategies"  # ob_example, a plug-in package outside openbell
LONG_SHORT = "ob_example.laggards:LeadersAndLaggards"  # no vectorized twin


def _with_plugin(monkeypatch: pytest.MonkeyPatch) -> str:
    """The deployment's run defaults of a day traded by the plug-in, importable by Airflow's processes, with
    fractional limit orders and short sales allowed."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(STRATEGIES), os.environ.get("PYTHONPATH")])))
    return json.dumps({"strategy": LONG_SHORT, "fractional": True, "order_type": "limit", "allow_short": True})


def _traded_limits_fractions_and_shorts(result: DayResult, broker_orders: list[dict[str, Any]]) -> None:
    """The plug-in traded through Airflow's workers: day limit orders, fractions of a share, short sales."""
    ids = {o["client_order_id"] for o in result.report["orders"] if o["origin"] == "strategy"}
    limits = [o for o in broker_orders if o["client_order_id"] in ids and o["type"] == "limit"]
    assert limits and all(o["limit_price"] and o["time_in_force"] == "day" for o in limits), broker_orders
    assert any(float(o["qty"]) != int(float(o["qty"])) for o in limits if o["side"] == "buy"), limits
    held: dict[str, float] = {}
    shorted: set[str] = set()
    for fill in sorted(result.report["fills"], key=lambda f: str(f["ts"])):
        qty = float(fill["qty"])
        held[fill["symbol"]] = held.get(fill["symbol"], 0.0) + (-qty if fill["side"] == "sell" else qty)
        if held[fill["symbol"]] < -1e-9:
            shorted.add(fill["symbol"])
            # a short in whole shares (the sum of fractional fills carries float error: 1e-6 of a share)
            assert abs(held[fill["symbol"]] - round(held[fill["symbol"]])) < 1e-6, (held[fill["symbol"]], fill)
    assert shorted, "no sale opened a short position"


@pytest.mark.long
def test_a_whole_day(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The ``sparse_day`` drill: a whole session on the IEX-like default market, with its morning-after
    checks, traded by a plug-in strategy from outside the package, re-optimized at 14:30 by replaying it."""
    # Market seed 7: a day where the 14:30 search beats the day's parameters out of sample.
    drill = replace(DRILLS["sparse_day"], run_defaults=_with_plugin(monkeypatch))
    broker: dict[str, Any] = {}
    drill = run_in_scratch(drill, tmp_path, progress=log.info,
                           on_finished=lambda day: broker.update(_broker_view(day.sim)))
    assert drill.violations == [], drill.facts
    short_tokens_held(drill)  # one trading attempt outlived many 30 s execution tokens
    assert drill.day is not None
    report = drill.day.report
    steps = {s["step"]: s for s in report["steps"]}

    # Orders were placed and filled: limit orders, fractions of a share and short sales.
    assert any(o["origin"] == "strategy" and o["status"] == "filled" for o in report["orders"])
    _traded_limits_fractions_and_shorts(drill.day, broker["orders"])
    # Thin names missed minutes; REST was never asked for a minute only because it had no trades.
    assert report["market"]["minutes_without_bars"]
    # REST calls: the warmup's gap since todays_bars and the catch-up before the stream's subscription (a
    # stream late at the deadline may add one); refilling every minute with a symbol missing would be hundreds
    assert sum(a.get("refills") or 0 for a in drill.facts["ledger"]["live_trading"]) <= 5
    assert sum(a.get("minutes_without_bars") or 0 for a in drill.facts["ledger"]["live_trading"]) > 100

    # The position seeded before the day was adopted and closed.
    assert "AAPL" in steps["reconcile"]["summary"]["adopted"]

    # The plug-in was re-optimized at 14:30 (it has no vectorized twin: each candidate replays on_minute), and
    # the version written is the one used after it.
    optimized = steps["midday_optimize"]["summary"]
    assert optimized["strategy"] == LONG_SHORT and optimized["evaluated"] > 1, optimized
    optimized_at = datetime.fromisoformat(optimized["market_time"]).astimezone(ET)
    assert time(14, 30) <= optimized_at.time() < time(15, 45), optimized_at
    assert optimized["new_version"] is not None, optimized
    used = [u for u in report["param_versions_used"] if u["id"] == optimized["new_version"]]
    assert used and used[0]["decisions"] > 0
