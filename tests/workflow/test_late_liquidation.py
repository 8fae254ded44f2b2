"""A liquidation that starts after its session (past midnight ET) is never skipped while the broker holds
anything: it acts, says it is late, and fails loudly since the close orders queue until the next open."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest
from airflow.sdk.exceptions import AirflowSkipException
from alpaca.trading.enums import QueryOrderStatus
from alpaca.trading.requests import GetOrdersRequest
from sqlalchemy import Engine, text

from dates import SESSION, at_et, the_session
from openbell.calendar import ET
from openbell.clock import clock_for
from openbell.params import RunParams
from openbell.sim.testing import SimProcess
from openbell.store.ledger import steps_for
from openbell.workflow.steps import StepContext, liquidation_is_late, run_eod_liquidate


@pytest.mark.parametrize(
    ("now", "is_backfill", "late"),
    [
        (at_et("09:00"), False, False),
        (at_et("15:58"), False, False),
        (at_et("16:00"), False, True),  # the close: market orders now queue until the next open
        (at_et("20:00"), False, True),
        (at_et("00:30", SESSION + timedelta(days=1)), False, True),
        (at_et("10:00", SESSION + timedelta(days=3)), False, True),
        (at_et("00:30", SESSION + timedelta(days=1)), True, False),  # a backfill never trades
        (at_et("12:00", SESSION - timedelta(days=1)), False, False),  # the session is still to come
    ],
)
def test_when_a_liquidation_is_late(now: datetime, is_backfill: bool, late: bool) -> None:
    assert liquidation_is_late(the_session(), now, is_backfill=is_backfill) is late


def _after_midnight(sim: SimProcess) -> None:
    clock_for(sim.config()).sleep_until(at_et("00:01", SESSION + timedelta(days=1)))


def _context(sim: SimProcess, engine: Engine) -> StepContext:
    return StepContext(session=the_session(), params=RunParams(), run_id="scheduled__2025-11-20", attempt=1,
                       run_type="scheduled", config_factory=sim.config,
                       state_url=engine.url.render_as_string(hide_password=False))


def test_a_late_liquidation_acts_while_the_broker_holds_and_fails_loudly(engine: Engine, tmp_path: Path) -> None:
    with SimProcess(date="2025-11-20", speed=120, start="23:59", data_dir=tmp_path / "sim",
                    extra_args=["--seed-position", "TQQQ:10", "--seed-position", "SQQQ:-5"]) as sim:
        _after_midnight(sim)
        ctx = _context(sim, engine)
        with pytest.raises(RuntimeError) as info:
            run_eod_liquidate(ctx)
        message = str(info.value)
        assert "late" in message and "positions remain" in message and "queued" in message
        assert "TQQQ" in message and "SQQQ" in message
        client = sim.config().trading_client()
        queued = client.get_orders(GetOrdersRequest(status=QueryOrderStatus.OPEN))
        assert sorted((o.symbol, o.side.value) for o in queued) == [("SQQQ", "buy"), ("TQQQ", "sell")]
    [row] = steps_for(engine, SESSION)
    assert (row["step"], row["status"]) == ("eod_liquidate", "failed")
    assert row["summary"]["late"] is True and "positions remain" in row["error"]
    with engine.connect() as conn:
        kinds = [r[0] for r in conn.execute(text("SELECT kind FROM events ORDER BY id"))]
        late = conn.execute(text("SELECT payload FROM events WHERE kind = 'liquidation_late'")).scalar_one()
        origins = {r[0] for r in conn.execute(text("SELECT origin FROM orders"))}
    assert kinds.index("liquidation_late") < kinds.index("liquidation")
    assert late["positions"] == {"TQQQ": 10.0, "SQQQ": -5.0} and late["open_orders"] == 0
    assert datetime.fromisoformat(late["market_time"]).astimezone(ET).date() == SESSION + timedelta(days=1)
    assert origins == {"liquidation"}


def test_a_late_liquidation_with_nothing_held_skips_with_its_reason(engine: Engine, tmp_path: Path) -> None:
    with SimProcess(date="2025-11-20", speed=120, start="23:59", data_dir=tmp_path / "sim") as sim:
        _after_midnight(sim)
        with pytest.raises(AirflowSkipException, match=r"is over.*holds no positions and no open orders"):
            run_eod_liquidate(_context(sim, engine))
    [row] = steps_for(engine, SESSION)
    assert (row["step"], row["status"]) == ("eod_liquidate", "skipped")
    assert "holds no positions" in row["summary"]["reason"]
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM events WHERE kind LIKE 'liquidation%'")).scalar() == 0


def test_a_rerun_after_the_close_that_finds_nothing_held_records_the_account_flat(
        engine: Engine, tmp_path: Path) -> None:
    # e.g. Airflow's retry of a liquidation killed at 15:59, starting at 16:05 after its orders filled
    with SimProcess(date="2025-11-20", speed=60, start="16:05", data_dir=tmp_path / "sim") as sim:
        summary = run_eod_liquidate(_context(sim, engine))
    assert summary["flat"] is True and "late" not in summary
    [row] = steps_for(engine, SESSION)
    assert (row["step"], row["status"]) == ("eod_liquidate", "success")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM events WHERE kind = 'liquidation_late'")).scalar() == 0


def test_a_backfill_run_skips_without_asking_the_broker(engine: Engine, tmp_path: Path) -> None:
    with SimProcess(date="2025-11-20", speed=120, start="23:59", data_dir=tmp_path / "sim",
                    extra_args=["--seed-position", "TQQQ:10"]) as sim:
        _after_midnight(sim)
        ctx = _context(sim, engine)
        ctx.run_type = "backfill"
        with pytest.raises(AirflowSkipException, match="backfill run"):
            run_eod_liquidate(ctx)
        assert sim.config().trading_client().get_orders(GetOrdersRequest(status=QueryOrderStatus.OPEN)) == []
