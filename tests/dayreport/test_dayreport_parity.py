"""A live day that traded exactly as its replay (every minute decided, every order filled at the decided
minute's close, the liquidation at the cut-off's close) differs from it by nothing: the built-in strategy over
two sessions of synthetic bars of the default universe (some minutes without a bar, one symbol starting late)."""

from __future__ import annotations

import sys
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import Engine, text

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "strategy"))  # strategy_synth

from strategy_synth import make_bars

from openbell.broker import book
from openbell.calendar import ET
from openbell.dayreport.summary import day_result
from openbell.store.bars import upsert_bars
from openbell.store.ledger import step
from openbell.store.sessions import record_open_equity
from openbell.strategy import DEFAULT_UNIVERSE

DAY = date(2024, 3, 7)  # the second session make_bars draws (2024-03-06 warms up)
RUN = {"strategy": "momentum_rotation", "universe": list(DEFAULT_UNIVERSE), "warmup_sessions": 1,
       "max_weight": 0.25, "max_gross": 1.0, "daily_loss_limit": 0.03, "min_notional": 100.0,
       "liquidate_minutes_before_close": 2.0}


def test_a_day_traded_as_replayed_differs_by_nothing(engine: Engine) -> None:
    upsert_bars(engine, make_bars(2, seed=5), "test")
    record_open_equity(engine, DAY, 100_000.0)
    with step(engine, DAY, "live_trading") as record:
        record.summary["run_params"] = RUN
    minutes = sorted(pd.to_datetime(make_bars(2, seed=5)["timestamp"], utc=True).unique())
    minutes = [m for m in minutes if m.tz_convert(ET).date() == DAY]
    with engine.begin() as conn:
        for seq, m in enumerate(minutes):
            conn.execute(text("INSERT INTO decisions (session_date, seq, ts, targets) VALUES (:d, :s, :t, '{}')"),
                         {"d": DAY, "s": seq, "t": m.to_pydatetime()})
    replayed = day_result(engine, DAY).replayed
    assert replayed is not None
    orders = replayed.result.orders
    assert (orders["kind"] == "policy").sum() >= 10 and (orders["kind"] == "close").any()
    seq_of = {m: n for n, m in enumerate(minutes)}
    with engine.begin() as conn:  # live: the replay's orders, filled at its prices
        for i, o in enumerate(orders.itertuples()):
            policy = o.kind == "policy"
            coid = f"ob-{i}-{o.symbol}"
            book.upsert_order(conn, book.OrderRow(client_order_id=coid, session_date=DAY, symbol=o.symbol,
                                                  side=o.side, qty=o.qty, status="filled",
                                                  decision_seq=seq_of[o.time] if policy else None,
                                                  origin="strategy" if policy else "liquidation"))
            book.insert_fill(conn, execution_id=f"x{i}", client_order_id=coid, session_date=DAY, symbol=o.symbol,
                             side=o.side, qty=o.qty, price=o.price,
                             ts=(o.time + timedelta(minutes=1, seconds=2)).to_pydatetime())
    result = day_result(engine, DAY)
    c = result.comparison
    assert c.replay_pnl == pytest.approx(replayed.result.total_pnl)
    assert c.live_pnl == pytest.approx(c.replay_pnl, abs=1e-6)
    assert c.attribution == pytest.approx(dict.fromkeys(c.attribution, 0.0), abs=1e-6)
    assert set(c.orders["status"]) == {"on time"} and c.live_only.empty
    assert len(c.missed_minutes) == 0 and c.slippage == 0.0
