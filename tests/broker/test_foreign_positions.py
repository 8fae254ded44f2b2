"""Positions openbell did not open: shorts, fractions and symbols outside the universe are adopted at
reconcile; one in a universe symbol is the strategy's to trade from its first trading decision (in whole
shares, so a fraction stays), one outside the universe is left alone, and the liquidation closes everything."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from dates import SESSION, at_et, the_session
from openbell.adapters.alpaca.broker import AlpacaBroker
from openbell.adapters.alpaca.data import AlpacaMarketData
from openbell.adapters.alpaca.venue import alpaca_venue
from openbell.broker import liquidate, reconcile
from openbell.calendar import previous_sessions
from openbell.clock import clock_for
from openbell.params import RunParams
from openbell.ports import Window
from openbell.sim.testing import SimProcess
from openbell.store.bars import upsert_bars
from openbell.store.ledger import steps_for
from openbell.store.versions import add_params
from openbell.strategy import DEFAULT_UNIVERSE, RiskLimits
from openbell.trading import run_trading_attempt
from openbell.workflow.steps import StepContext, run_eod_liquidate

UNIVERSE = list(DEFAULT_UNIVERSE)
# TQQQ and SQQQ are in the universe (a fraction, a short); AAPL and MSFT are not (a fraction, a fractional short)
SEEDS = {"TQQQ": 10.5, "SQQQ": -20.0, "AAPL": 3.25, "MSFT": -2.5}
BUSY = {"lookback": 5, "vol_window": 10, "top_k": 3, "threshold": 0.0, "rebalance_minutes": 1,
        "weighting": "score"}




def _seeds() -> list[str]:
    return [arg for sym, qty in SEEDS.items() for arg in ("--seed-position", f"{sym}:{qty:g}")]


def _rows(engine: Engine, query: str, **params: Any) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(text(query), params))


def test_reconcile_adopts_shorts_fractions_and_foreign_symbols_and_the_liquidation_closes_them(
        engine: Engine, tmp_path: Path) -> None:
    s = the_session()
    with SimProcess(date="2025-11-20", speed=60, start="15:56", data_dir=tmp_path / "sim", extra_args=_seeds()) as sim:
        broker = AlpacaBroker(sim.config())
        report = reconcile(broker, engine, SESSION, universe=UNIVERSE)
        assert report.adopted == ["AAPL", "MSFT", "SQQQ", "TQQQ"]
        assert report.adopted_left_alone == ["AAPL", "MSFT"]
        book = {r[0]: (float(r[1]), r[2]) for r in _rows(engine, "SELECT symbol, qty, origin FROM positions")}
        assert book == {sym: (qty, "adopted") for sym, qty in SEEDS.items()}
        events = _rows(engine, "SELECT payload FROM events WHERE kind = 'position_adopted'")
        adopted = {e["symbol"]: e for (e,) in events}
        assert adopted["MSFT"]["qty"] == -2.5 and adopted["MSFT"]["short"] and adopted["MSFT"]["fractional"]
        assert not adopted["MSFT"]["in_universe"] and "left alone" in adopted["MSFT"]["handling"]
        assert adopted["SQQQ"]["short"] and adopted["SQQQ"]["in_universe"]
        assert adopted["SQQQ"]["handling"] == "traded by the strategy from its first trading decision"
        assert "fraction 0.5 is left until the liquidation" in adopted["TQQQ"]["handling"]
        again = reconcile(broker, engine, SESSION, universe=UNIVERSE)
        assert (again.positions_adopted, again.differences) == (0, 0)

        closed = liquidate(broker, engine, SESSION, clock_for(sim.config()), s.close)
        assert closed.flat and closed.held == {} and closed.retries == 0
        assert broker.positions() == []
    orders = {r[0]: (r[1], float(r[2]), r[3], r[4])
              for r in _rows(engine, "SELECT symbol, side, qty, status, origin FROM orders")}
    assert orders == {"AAPL": ("sell", 3.25, "filled", "liquidation"), "MSFT": ("buy", 2.5, "filled", "liquidation"),
                      "SQQQ": ("buy", 20.0, "filled", "liquidation"), "TQQQ": ("sell", 10.5, "filled", "liquidation")}
    fills = {r[0]: float(r[1]) for r in _rows(engine, "SELECT symbol, qty FROM fills")}
    assert fills == {sym: abs(qty) for sym, qty in SEEDS.items()}
    assert {r[0]: float(r[1]) for r in _rows(engine, "SELECT symbol, qty FROM positions")} == dict.fromkeys(SEEDS, 0.0)


@pytest.mark.long
def test_the_strategy_trades_adopted_universe_positions_and_leaves_foreign_ones_to_the_liquidation(
        engine: Engine, tmp_path: Path) -> None:
    s = the_session()
    with SimProcess(date="2025-11-20", speed=120, start="15:40", data_dir=tmp_path / "sim", extra_args=_seeds()) as sim:
        config = sim.config()
        clock = clock_for(config)
        prior = previous_sessions(SESSION, 2)
        stored_until = clock.now() - timedelta(minutes=3)  # what the download step leaves
        upsert_bars(engine, AlpacaMarketData(config).bars(UNIVERSE, Window(prior[0].open, stored_until)), source="rest")
        add_params(engine, "momentum_rotation", BUSY, source="manual")
        reconcile(AlpacaBroker(config), engine, SESSION, universe=UNIVERSE)
        ctx = StepContext(session=s, params=RunParams(), run_id="scheduled__2025-11-20", attempt=1,
                          run_type="scheduled", config_factory=sim.config,
                          state_url=engine.url.render_as_string(hide_password=False))
        outcome: dict[str, Any] = {}

        def eod() -> None:
            import airflow.exceptions  # noqa: F401 - imported before the wait, not at 15:58

            clock.sleep_until(at_et("15:58"))
            outcome["before"] = {p.symbol: p.qty for p in AlpacaBroker(config).positions()}
            outcome["summary"] = run_eod_liquidate(ctx)

        liquidation = threading.Thread(target=eod, daemon=True)
        liquidation.start()
        run_trading_attempt(alpaca_venue(config), engine, SESSION, clock=clock, strategy_name="momentum_rotation",
                         risk=RiskLimits(max_weight=0.4, max_gross=1.0, daily_loss_limit=None), universe=UNIVERSE,
                         min_notional=100.0, warmup_sessions=2, trade_until=at_et("15:58"))
        liquidation.join(timeout=60)
        assert AlpacaBroker(config).positions() == []
    assert outcome["summary"]["flat"] is True
    before = outcome["before"]
    assert before["AAPL"] == 3.25 and before["MSFT"] == -2.5  # left alone all day
    assert before.get("TQQQ", 0.0) % 1 == 0.5  # traded in whole shares: the fraction stays

    strategy = _rows(engine, "SELECT symbol, qty, decision_seq FROM orders WHERE origin = 'strategy'")
    assert {sym for sym, _, _ in strategy}.isdisjoint({"AAPL", "MSFT"})
    assert all(float(qty) == int(qty) for _, qty, _ in strategy)
    first = min(seq for _, _, seq in strategy)  # the first decision that sends orders (catch-up minutes do not)
    assert {sym for sym, _, seq in strategy if seq == first} >= {"TQQQ", "SQQQ"}
    closes = {r[0]: (r[1], float(r[2]))
              for r in _rows(engine, "SELECT symbol, side, qty FROM orders WHERE origin = 'liquidation'")}
    assert closes["AAPL"] == ("sell", 3.25) and closes["MSFT"] == ("buy", 2.5)
    assert closes["TQQQ"][1] % 1 == 0.5
    [row] = [r for r in steps_for(engine, SESSION) if r["step"] == "eod_liquidate"]
    assert row["status"] == "success"
    assert all(float(q) == 0 for (q,) in _rows(engine, "SELECT qty FROM positions"))
