"""The Trading view tells a loss stop from an operator's halt (and from the strategy's failures) and shows the
extra loss budget granted: in the snapshot, in the live row, and on the page (which also asks for a budget before
resuming after a loss stop)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import requests
from ui_helpers import good_cookie, recv_until, ws_connect

from dates import SESSION as DAY
from openbell.store.db import make_engine
from openbell.store.sessions import record_open_equity, set_risk

STATIC = Path(__file__).resolve().parents[2] / "include" / "openbell" / "ui" / "static"


def _snapshot(served: Any) -> dict[str, Any]:
    return requests.get(served.base + "/api/snapshot?date=2025-11-20", cookies=good_cookie(), timeout=10).json()


def test_the_snapshot_and_the_live_row_carry_the_cause_and_the_extra_loss(served: Any, state_url: str) -> None:
    engine = make_engine(state_url)
    try:
        record_open_equity(engine, DAY, 100_000.0)
        set_risk(engine, DAY, "HALTED", "daily loss 3.1%", "openbell", cause="loss_stop")
        risk = _snapshot(served)["risk"]
        assert (risk["state"], risk["cause"], risk["extra_loss"]) == ("HALTED", "loss_stop", 0.0)

        async def scenario() -> dict[str, Any]:
            async with ws_connect(served.ws + "?date=2025-11-20") as ws:
                await recv_until(ws, lambda m: m["type"] == "snapshot")
                await asyncio.to_thread(set_risk, engine, DAY, "ACTIVE", "reviewed", "alice", cause="operator",
                                        extra_loss=1_000.0)
                return await recv_until(ws, lambda m: m["type"] == "row" and m["table"] == "trading_sessions"
                                        and m["row"]["risk_state"] == "ACTIVE")

        row = asyncio.run(scenario())["row"]
        assert (row["risk_cause"], float(row["extra_loss"])) == ("operator", 1_000.0)
        risk = _snapshot(served)["risk"]
        assert (risk["state"], risk["cause"], risk["extra_loss"], risk["by"]) == ("ACTIVE", "operator", 1_000.0,
                                                                                   "alice")
    finally:
        engine.dispose()


def test_the_page_shows_who_set_the_state_and_asks_for_a_budget_after_a_loss_stop() -> None:
    """What the page does with them (the browser test drives it end to end)."""
    page = (STATIC / "index.html").read_text()
    script = (STATIC / "app.js").read_text()
    assert 'id="control-extra-loss"' in page and 'type="number"' in page
    assert "r.risk_cause" in script and "r.extra_loss" in script  # the live row
    for shown in ('"set by"', '"the loss stop"', '"an operator"', '"the strategy\'s failures"', '"extra loss granted"'):
        assert shown in script, shown
    assert "extra_loss_budget" in script  # sent with a resume, only when given
    assert "a resume needs an extra loss budget" in script
