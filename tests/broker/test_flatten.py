"""Flatten and prove flat, against a real simulator and a real Postgres: a flat first pass is proven by a
second one a market minute later; a first pass that is not flat is reported as it is, with no second pass,
and its failure is journaled and raised naming what the broker holds."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from dates import SESSION, at_et, the_session
from openbell.adapters.alpaca.broker import AlpacaBroker
from openbell.adapters.alpaca.data import AlpacaMarketData
from openbell.broker.flatten import flatten_and_prove, liquidation_incomplete
from openbell.clock import clock_for
from openbell.sim.testing import SimProcess
from openbell.store.sessions import get_phase

SEEDS = ["--seed-position", "TQQQ:10", "--seed-position", "SQQQ:-5"]


def _events(engine: Engine, kind: str) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return list(conn.execute(text("SELECT payload FROM events WHERE kind = :k ORDER BY id"), {"k": kind}).scalars())


def test_a_flat_first_pass_is_proven_by_a_second_a_market_minute_later(engine: Engine, tmp_path: Path) -> None:
    with SimProcess(date="2025-11-20", speed=60, start="15:50", data_dir=tmp_path / "sim", extra_args=SEEDS) as sim:
        config = sim.config()
        result = flatten_and_prove(AlpacaBroker(config), engine, SESSION, clock_for(config), the_session().close,
                                   market_data=AlpacaMarketData(config))
        assert config.trading_client().get_all_positions() == []
    first, proof = result.first, result.proof
    assert first.flat and first.close_orders == 2
    assert proof is not None and proof.flat and proof.close_orders == 0
    assert result.flat and result.report is proof and result.held == {}
    ended = datetime.fromisoformat(first.finished_at)
    assert ended + timedelta(minutes=1) <= datetime.fromisoformat(proof.finished_at) < at_et("16:00")
    assert [e["flat"] for e in _events(engine, "liquidation")] == [True, True]  # one per pass
    assert get_phase(engine, SESSION) == "liquidating"


def test_a_first_pass_not_flat_is_reported_without_a_second(engine: Engine, tmp_path: Path) -> None:
    with SimProcess(date="2025-11-20", speed=60, start="15:50", data_dir=tmp_path / "sim",
                    extra_args=[*SEEDS, "--halt", "TQQQ:15:45-close"]) as sim:
        config = sim.config()
        clock = clock_for(config)
        started = clock.now()
        # as a flatten during the session: the phase left alone, each pass one market minute at most
        result = flatten_and_prove(AlpacaBroker(config), engine, SESSION, clock, the_session().close,
                                   market_data=AlpacaMarketData(config), mark_phase=False,
                                   window=timedelta(minutes=1))
        left = {p.symbol: float(p.qty) for p in config.trading_client().get_all_positions()}
    assert left == {"TQQQ": 10.0}
    assert result.proof is None and not result.flat and result.report is result.first
    report = result.first
    assert not report.flat and report.positions_left == {"TQQQ": 10.0} and report.open_orders_left == 1
    ended = datetime.fromisoformat(report.finished_at)
    assert started + timedelta(minutes=1) <= ended < at_et("15:58")  # the window ended it, not the close
    assert set(result.held) == {"TQQQ"} and result.held["TQQQ"]["halted"] is True
    assert len(_events(engine, "liquidation")) == 1  # no second pass
    assert get_phase(engine, SESSION) is None

    summary: dict[str, Any] = {}
    with pytest.raises(RuntimeError) as info:
        liquidation_incomplete(engine, SESSION, report, summary)
    assert "account not flat" in str(info.value) and "TQQQ 10 held by the broker" in str(info.value)
    assert summary == {"flat": False, "positions_left": {"TQQQ": 10.0}, "open_orders_left": 1}
    [incomplete] = _events(engine, "liquidation_incomplete")
    assert incomplete["positions"] == {"TQQQ": 10.0} and set(incomplete["held"]) == {"TQQQ"}
