"""A recorded day whose comparison with its replay is worked out by hand (``day_strategies:StepIn``, capital
10,000, whole shares, minimum order 500, bars from 09:30 to 09:44 ET).

AAA closes 100 100 100 101 102 102 103 104 104 105 105 106 106 106 107, BBB 50 50 50 50 50.5 51 51 51 50.5 50...
Version 1 (weight 0.2) is in force until 09:37, version 2 (weight 0.5) from 09:38.

The replay: 09:32 buy 20 AAA at 100; 09:33 buy 50 BBB at 50; 09:36 sell 50 BBB at 51; 09:38 buy 28 AAA at
104 (0.5 x 10,130 / 104 = 48.7); 09:44 (the last bar) sell 48 AAA at 107 and nothing else. P&L: AAA -2000 -
2912 + 5136 = +224, BBB +50: +274.

Live missed the minutes 09:32 to 09:35 (no decision); at 09:36 it bought 19 AAA (0.2 x 10,000 / 103) filled at
103.05, four minutes late; at 09:38 a pre-trade limit refused its buy of 29 AAA, at 09:40 a retry was not sent;
the liquidation sold the 19 AAA at 106.95 at 09:45:02. It never held BBB. P&L: 19 x (106.95 - 103.05) = +74.10.

Difference -199.90 = slippage -1.90 (0.05 a share on both AAA fills) + late -64 (19 shares bought at 103
instead of 100: -57; the 20th share the replay held from 100 to 107: -7) + missed decisions -50 (the BBB
the replay held from 50 to 51) + refused -84 (28 AAA held by the replay from 104 to 107).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

import pandas as pd
from sqlalchemy import Connection, Engine, text

from dates import et
from openbell.broker import book
from openbell.calendar import previous_sessions
from openbell.store.bars import upsert_bars
from openbell.store.events import record_event
from openbell.store.ledger import step
from openbell.store.sessions import record_open_equity
from openbell.store.versions import add_params

DAY = date(2025, 11, 20)
STRATEGY = "day_strategies:StepIn"
AAA = [100, 100, 100, 101, 102, 102, 103, 104, 104, 105, 105, 106, 106, 106, 107]
BBB = [50, 50, 50, 50, 50.5, 51, 51, 51, 50.5, 50, 50, 50, 50, 50, 50]
RUN_PARAMS = {"strategy": STRATEGY, "strategy_params": None, "universe": ["AAA", "BBB"], "warmup_sessions": 1,
              "max_weight": 0.5, "max_gross": 1.0, "daily_loss_limit": 0.03, "min_notional": 500.0,
              "liquidate_minutes_before_close": 2.0}

LIVE_PNL = 19 * (106.95 - 103.05)
REPLAY_PNL = 274.0
ATTRIBUTION = {"slippage": -1.90, "late": -64.0, "missed decisions": -50.0, "refused": -84.0, "not sent": 0.0,
               "other": 0.0}


def minute_of(i: int, day: date = DAY) -> datetime:
    """The start of the ``i``-th minute from 09:30 ET."""
    return et(day, 9, 30) + timedelta(minutes=i)


def bars(day: date = DAY, n: int = len(AAA)) -> pd.DataFrame:
    rows = [(minute_of(i, day), sym, px[i], px[i], px[i], px[i], 1000.0)
            for i in range(n) for sym, px in (("AAA", AAA), ("BBB", BBB))]
    return pd.DataFrame(rows, columns=["timestamp", "symbol", "open", "high", "low", "close", "volume"])


def _order(conn: Connection, day: date, coid: str, symbol: str, side: str, qty: float, status: str,
           seq: int | None, origin: str = "strategy", reject: str | None = None) -> None:
    book.upsert_order(conn, book.OrderRow(client_order_id=f"{coid}-{day:%m%d}", session_date=day, symbol=symbol,
                                          side=side, qty=qty, status=status, decision_seq=seq, origin=origin,
                                          reject_reason=reject))


def seed_day(engine: Engine, day: date = DAY, *, strategy: str = STRATEGY, run_params: bool = True,
             kinds: dict[str, Any] | None = None, terms: dict[str, list[str]] | None = None) -> None:
    """The day above (on ``day``, the first five minutes of the session before it stored too) in ``engine``'s
    database; ``kinds`` are run parameters recorded besides :data:`RUN_PARAMS` (``fractional``, ``allow_short``),
    ``terms`` the assets' terms the live attempt recorded."""
    before = previous_sessions(day, 1)[0].date
    upsert_bars(engine, pd.concat([bars(before, 5), bars(day)], ignore_index=True), "test")

    def minute(i: int) -> datetime:
        return minute_of(i, day)

    v1 = add_params(engine, strategy, {"weight": 0.2}, source="manual").id
    v2 = add_params(engine, strategy, {"weight": 0.5}, source="optimizer", session_date=day).id
    record_open_equity(engine, day, 10_000.0)
    decided = [i for i in range(len(AAA)) if not 2 <= i <= 5]
    seq = {i: n for n, i in enumerate(decided)}
    with engine.begin() as conn:
        for i in decided:
            conn.execute(text("INSERT INTO decisions (session_date, seq, ts, targets, param_version_id)"
                              " VALUES (:d, :seq, :ts, CAST(:t AS jsonb), :v)"),
                         {"d": day, "seq": seq[i], "ts": minute(i), "t": '{"notes": []}', "v": v1 if i < 8 else v2})
            conn.execute(text("INSERT INTO equity (session_date, ts, equity) VALUES (:d, :ts, :e)"),
                         {"d": day, "ts": minute(i + 1), "e": 10_000.0 + (19 * (AAA[i] - 103.05) if i >= 6 else 0)})
        _order(conn, day, "ob-aaa-buy", "AAA", "buy", 19, "filled", seq[6])
        book.insert_fill(conn, execution_id=f"x1-{day}", client_order_id=f"ob-aaa-buy-{day:%m%d}", session_date=day,
                         symbol="AAA", side="buy", qty=19, price=103.05, ts=minute(7) + timedelta(seconds=1))
        _order(conn, day, "ob-aaa-retry", "AAA", "buy", 29, "not_sent", seq[10], reject="the trading cut-off passed")
        _order(conn, day, "liq-aaa", "AAA", "sell", 19, "filled", None, origin="liquidation")
        book.insert_fill(conn, execution_id=f"x2-{day}", client_order_id=f"liq-aaa-{day:%m%d}", session_date=day,
                         symbol="AAA", side="sell", qty=19, price=106.95, ts=minute(15) + timedelta(seconds=2))
    for i in (8, 9):
        record_event(engine, day, "order_refused", {"symbol": "AAA", "side": "buy", "qty": 29.0,
                                                    "limit": "max_order_notional", "value": 3016.0, "bound": 2500.0,
                                                    "decision_seq": seq[i]}, ts=minute(i + 1))
    with step(engine, day, "live_trading") as record:
        if run_params:
            record.summary["run_params"] = {**RUN_PARAMS, "strategy": strategy, **(kinds or {})}
        if terms is not None:
            record.summary["asset_terms"] = terms
