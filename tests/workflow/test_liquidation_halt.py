"""A liquidation that meets a halted symbol: the broker holds its close order until trading resumes. The
liquidation says which symbol is held and why (the live loop's record of the halt, else the missing
bars), waits for the resumption before the close, and fails loudly, naming the held position, when the
close comes first."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from alpaca.trading.enums import QueryOrderStatus
from alpaca.trading.requests import GetOrdersRequest
from sqlalchemy import Engine, text

from dates import SESSION, at_et, the_session
from openbell.adapters.alpaca.broker import AlpacaBroker
from openbell.broker import reconcile
from openbell.clock import clock_for
from openbell.params import RunParams
from openbell.sim.testing import SimProcess
from openbell.store.events import record_event
from openbell.store.ledger import steps_for
from openbell.workflow.steps import StepContext, run_eod_liquidate

SEEDS = ["--seed-position", "TQQQ:10", "--seed-position", "SQQQ:-5"]




def _context(sim: SimProcess, engine: Engine) -> StepContext:
    return StepContext(session=the_session(), params=RunParams(), run_id="scheduled__2025-11-20", attempt=1,
                       run_type="scheduled", config_factory=sim.config,
                       state_url=engine.url.render_as_string(hide_password=False))


def _events(engine: Engine, kind: str) -> list[dict]:  # type: ignore[type-arg]
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT payload FROM events WHERE kind = :k ORDER BY id"), {"k": kind})
        return [r[0] for r in rows]


def _at(sim: SimProcess, hhmm: str) -> None:
    """Wait for market time ``hhmm`` (a step's first start imports Airflow: seconds of wall time)."""
    clock_for(sim.config()).sleep_until(at_et(hhmm))


@pytest.mark.long
def test_a_halted_symbol_is_reported_held_and_closed_when_trading_resumes(engine: Engine, tmp_path: Path) -> None:
    with SimProcess(date="2025-11-20", speed=30, start="15:52", data_dir=tmp_path / "sim",
                    extra_args=[*SEEDS, "--halt", "TQQQ:15:50-15:57"]) as sim:
        reconcile(AlpacaBroker(sim.config()), engine, SESSION)  # the day's reconcile adopted both
        _at(sim, "15:53")
        summary = run_eod_liquidate(_context(sim, engine))
        client = sim.config().trading_client()
        assert client.get_all_positions() == []
        assert client.get_orders(GetOrdersRequest(status=QueryOrderStatus.OPEN)) == []
    assert summary["flat"] is True
    held = summary["held"]["TQQQ"]
    assert held["qty"] == 10.0 and held["halted"] is True
    assert held["reason"] == "halted: no trade since 15:49 ET"
    assert at_et("15:53") <= datetime.fromisoformat(held["since"]) < at_et("15:57")
    assert at_et("15:57") <= datetime.fromisoformat(held["resumed_at"]) < at_et("15:58")
    assert set(summary["held"]) == {"TQQQ"}  # SQQQ trades: its close filled at once
    [row] = steps_for(engine, SESSION)
    assert (row["step"], row["status"]) == ("eod_liquidate", "success")
    [event] = _events(engine, "liquidation_held")
    assert event["symbol"] == "TQQQ" and event["client_order_id"] == held["client_order_id"]
    assert [e["symbol"] for e in _events(engine, "liquidation_resumed")] == ["TQQQ"]
    assert _events(engine, "liquidation_incomplete") == []
    with engine.connect() as conn:
        book = dict(conn.execute(text("SELECT symbol, qty FROM positions")).all())
        fills = dict(conn.execute(text("SELECT symbol, qty FROM fills")).all())
    assert {s: float(q) for s, q in book.items()} == {"TQQQ": 0.0, "SQQQ": 0.0}
    assert {s: float(q) for s, q in fills.items()} == {"TQQQ": 10.0, "SQQQ": 5.0}


def test_a_halt_to_the_close_fails_the_liquidation_naming_the_held_position(engine: Engine, tmp_path: Path) -> None:
    with SimProcess(date="2025-11-20", speed=60, start="15:57", data_dir=tmp_path / "sim",
                    extra_args=[*SEEDS, "--halt", "TQQQ:15:50-close"]) as sim:
        # what the live loop records from the data stream's statuses channel
        record_event(engine, SESSION, "symbol_halted", {"symbol": "TQQQ", "change": "halted", "code": "H",
                                                        "reason": "Halt News Pending",
                                                        "market_time": at_et("15:50").isoformat()})
        _at(sim, "15:58")
        with pytest.raises(RuntimeError) as info:
            run_eod_liquidate(_context(sim, engine))
        client = sim.config().trading_client()
        left = {p.symbol: float(p.qty) for p in client.get_all_positions()}
    message = str(info.value)
    assert "account not flat" in message and "TQQQ 10 held by the broker" in message
    assert "halted since 15:50 ET (Halt News Pending)" in message and "SQQQ" not in message
    assert left == {"TQQQ": 10.0}
    [row] = steps_for(engine, SESSION)
    assert (row["step"], row["status"]) == ("eod_liquidate", "failed")
    assert "TQQQ" in row["error"] and "halted" in row["error"]
    assert row["summary"]["flat"] is False and row["summary"]["positions_left"] == {"TQQQ": 10.0}
    assert row["summary"]["held"]["TQQQ"]["resumed_at"] is None
    assert "first_pass" in row["summary"]
    [incomplete] = _events(engine, "liquidation_incomplete")
    assert incomplete["positions"] == {"TQQQ": 10.0}
    assert set(incomplete["held"]) == {"TQQQ"} and incomplete["held"]["TQQQ"]["halted"] is True
    assert datetime.fromisoformat(incomplete["market_time"]) >= at_et("16:00")
    assert _events(engine, "liquidation_resumed") == []
