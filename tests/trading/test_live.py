"""The live session end to end: real simulator (fast market time), real streams, real Postgres."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from alpaca.common.exceptions import APIError
from alpaca.trading.enums import OrderSide, QueryOrderStatus, TimeInForce
from alpaca.trading.requests import GetOrdersRequest, MarketOrderRequest
from sqlalchemy import Engine, text

from dates import SESSION
from live_parts import sim_run, store_history
from openbell.adapters.alpaca.data import AlpacaMarketData
from openbell.adapters.alpaca.venue import alpaca_venue
from openbell.broker import client_order_id, parse_client_order_id
from openbell.calendar import ET, session
from openbell.clock import clock_for
from openbell.ports import Window
from openbell.store.sessions import set_phase
from openbell.store.versions import add_params
from openbell.strategy import DEFAULT_UNIVERSE, RiskLimits
from openbell.trading import (
    AttemptReport,
    SessionLock,
    SessionLocked,
    SessionOver,
    TradingAttempt,
    run_trading_attempt,
)
from openbell.trading.settings import LoopSettings

BUSY = {"lookback": 5, "vol_window": 10, "top_k": 3, "threshold": 0.0, "rebalance_minutes": 1,
        "weighting": "score"}


def _count(engine: Engine, query: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(query)).scalar() or 0)


def _decisions(engine: Engine) -> int:
    return _count(engine, "SELECT count(*) FROM decisions")


@pytest.mark.long
def test_live_session_trades_until_the_close(engine: Engine, tmp_path: Path) -> None:
    s = session(SESSION)
    assert s is not None
    universe = list(DEFAULT_UNIVERSE)
    # 120x: every fault below lands a few wall seconds after the loop trades, even on a loaded machine
    with sim_run(tmp_path, speed=120, start="15:15") as sim:
        config = sim.config()
        # what the download step leaves: two prior sessions and today until a few minutes ago
        clock = store_history(engine, config, universe, sessions=2, lag=timedelta(minutes=3))
        first = add_params(engine, "momentum_rotation", BUSY, source="manual")
        side: dict[str, object] = {}

        def meanwhile() -> None:
            """The faults, once the loop trades (its start-up takes market minutes), and what the 14:30
            and 15:58 tasks do through Postgres meanwhile."""
            while _decisions(engine) < 4:
                time.sleep(0.05)
            # the bar stream silent for the 8 market minutes from the next (whenever this request lands): the
            # watchdog (3 silent minutes: restart) has 5, 2.5 wall seconds at 120x; the streams dropped after it
            silence = (clock.now() + timedelta(minutes=1)).astimezone(ET)
            sim.set_faults(silence_now=8)
            side["silence_from"] = silence
            side["bad"] = add_params(engine, "momentum_rotation", {"lookback": 1}, source="optimizer").id
            give_up = time.monotonic() + 10
            while not _count(engine, "SELECT count(*) FROM events WHERE kind = 'params_refused'"):
                assert time.monotonic() < give_up, "the invalid version was never refused"
                time.sleep(0.05)
            good = add_params(engine, "momentum_rotation", {**BUSY, "top_k": 2}, source="optimizer")
            side["good"] = good.id
            give_up = time.monotonic() + 30
            while not _count(engine, "SELECT count(*) FROM events WHERE kind = 'stream_restart'"):
                if time.monotonic() > give_up:
                    break  # asserted below
                time.sleep(0.05)
            clock.sleep_until(silence.replace(second=0, microsecond=0) + timedelta(minutes=9))
            sim.set_faults(drop_streams_now=True)
            clock.sleep_until(s.close - timedelta(minutes=5))
            set_phase(engine, SESSION, "liquidating")
            side["liquidating_at"] = clock.now()

        helper = threading.Thread(target=meanwhile, daemon=True)
        helper.start()
        report = run_trading_attempt(
            alpaca_venue(config), engine, SESSION, clock=clock, strategy_name="momentum_rotation",
            risk=RiskLimits(max_weight=0.4, max_gross=1.0, daily_loss_limit=None), universe=universe,
            min_notional=100.0, warmup_sessions=2,
        )
        helper.join(timeout=10)
        assert clock.now() >= s.close  # returned because the session is over

        client = config.trading_client()
        broker_orders = client.get_orders(GetOrdersRequest(status=QueryOrderStatus.ALL, limit=500))
        positions = {p.symbol: float(p.qty) for p in client.get_all_positions()}
        with engine.connect() as conn:
            seqs = [r[0] for r in conn.execute(text("SELECT seq FROM decisions ORDER BY seq"))]
            minutes = [r[0] for r in conn.execute(text("SELECT ts FROM decisions ORDER BY seq"))]
            orders = conn.execute(text("SELECT client_order_id, decision_seq, status, reject_reason FROM orders")).all()
            fills = conn.execute(text("SELECT count(*) FROM fills")).scalar()
            equity = conn.execute(text("SELECT count(*) FROM equity")).scalar()
            kinds = [r[0] for r in conn.execute(text("SELECT kind FROM events ORDER BY id"))]
            held = conn.execute(text("SELECT symbol, qty FROM positions WHERE qty <> 0")).all()
            book = {r[0]: float(r[1]) for r in held}

    # decisions: one per minute, in order, consecutive sequence numbers, nothing after the close
    assert report.decisions == len(seqs) > 10
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    assert minutes == [minutes[0] + timedelta(minutes=i) for i in range(len(minutes))]  # no gap
    assert minutes[-1] == s.close - timedelta(minutes=1)
    # stream health: the silent stream was restarted, the dropped one reconnected, missed minutes refilled
    assert report.stream_restarts >= 1 and report.reconnects >= 1 and report.refills >= 2
    assert {"stream_restart", "refill"} <= set(kinds)
    # orders: placed and filled, one broker order per client_order_id, all recorded
    ids = [o.client_order_id for o in broker_orders]
    assert report.orders > 0 and report.fills > 0 and fills and fills >= report.fills
    assert len(ids) == len(set(ids)) and all(parse_client_order_id(i) for i in ids)
    # every broker order is recorded; an order the broker refused at submit exists only in Postgres,
    # recorded as rejected with its reason
    assert {o[0] for o in orders if o[2] != "rejected"} == set(ids)
    assert all(o[3] for o in orders if o[2] == "rejected")
    assert all(o[2] == "filled" for o in orders if o[0] in ids and o[2] != "rejected")
    assert equity and equity >= report.decisions
    # the position book agrees with the broker
    assert book == positions
    # hot reload: the bad version refused with an event, the good one used
    assert report.params_refused == 1 and "params_refused" in kinds
    assert report.param_versions[0] == first.id and side["good"] in report.param_versions
    assert "params_reloaded" in kinds
    # nothing opened once the phase was liquidating (decisions of later minutes placed no order)
    liq: datetime = side["liquidating_at"]  # type: ignore[assignment]
    late = [o for o in orders if o[1] is not None and minutes[o[1] - seqs[0]] > liq + timedelta(minutes=1)]
    assert report.liquidating_seen and late == []
    assert book  # something was held when trading stopped


def test_a_second_attempt_cannot_trade_beside_the_first_and_a_closed_session_is_refused(
    engine: Engine, tmp_path: Path
) -> None:
    with sim_run(tmp_path, speed=60, start="16:05") as sim:
        config = sim.config()
        clock = clock_for(config)
        with SessionLock(engine, SESSION, wait=0), pytest.raises(SessionLocked, match="already being traded"):
            run_trading_attempt(alpaca_venue(config), engine, SESSION, clock=clock, lock_wait=0.5)
        with pytest.raises(SessionOver, match="is over"):
            run_trading_attempt(alpaca_venue(config), engine, SESSION, clock=clock, lock_wait=0.5)
        assert config.trading_client().get_orders(GetOrdersRequest(status=QueryOrderStatus.ALL)) == []
    assert _decisions(engine) == 0


@pytest.mark.long
def test_fills_made_while_the_trade_stream_is_down_are_recovered_exactly(engine: Engine, tmp_path: Path) -> None:
    universe = list(DEFAULT_UNIVERSE)
    faults = ["--drop-streams-at", "15:36", "--drop-streams-at", "15:46"]
    # 120x: the first drop comes 5 wall seconds after the start, once the loop trades even on a loaded machine
    with sim_run(tmp_path, faults, speed=120, start="15:26") as sim:
        config = sim.config()
        clock = store_history(engine, config, universe, sessions=2)
        report = run_trading_attempt(
            alpaca_venue(config), engine, SESSION, clock=clock, params_override=BUSY,
            risk=RiskLimits(max_weight=0.4, daily_loss_limit=None), universe=universe, warmup_sessions=2,
            trade_stream_backoff=(3.5, 3.5),  # each drop keeps trade updates away for ~7 market minutes
        )
        broker = {o.client_order_id: o for o in config.trading_client().get_orders(
            GetOrdersRequest(status=QueryOrderStatus.ALL, limit=500))}
        positions = {p.symbol: float(p.qty) for p in config.trading_client().get_all_positions()}
    with engine.connect() as conn:
        per_order = dict(conn.execute(text("SELECT client_order_id, sum(qty) FROM fills GROUP BY 1")).all())
        recovered = conn.execute(text("SELECT count(*) FROM fills WHERE execution_id LIKE 'recovered:%'")).scalar()
        stored = dict(conn.execute(text("SELECT client_order_id, filled_qty FROM orders")).all())
        book = {r[0]: float(r[1]) for r in conn.execute(text("SELECT symbol, qty FROM positions WHERE qty <> 0"))}
        rejected = [r[0] for r in conn.execute(text("SELECT reject_reason FROM orders WHERE status = 'rejected'"))]
        summary = conn.execute(text("SELECT payload FROM events WHERE kind = 'live_session_end'")).scalar_one()

    assert report.trade_stream_reconnects >= 1 and report.fills_recovered == recovered and recovered
    # every share the broker filled is in fills exactly once, and Postgres agrees with the broker
    filled = {c: float(o.filled_qty or 0) for c, o in broker.items()}
    assert {c: float(q) for c, q in per_order.items()} == {c: q for c, q in filled.items() if q > 0}
    assert {c: float(q) for c, q in stored.items() if c in broker} == filled
    assert book == positions
    assert not [r for r in rejected if "wash" in (r or "")]
    # the session's summary carries the counts (the risk clips are logged once each, counted here)
    assert summary["fills_recovered"] == recovered and sum(summary["risk_clips"]["max_weight"].values()) > 1


def test_an_order_working_at_the_broker_holds_back_the_opposite_side(engine: Engine, tmp_path: Path) -> None:
    s = session(SESSION)
    assert s is not None
    with sim_run(tmp_path, start="09:25") as sim:
        config = sim.config()
        client = config.trading_client()
        # an earlier attempt's buy, queued for the open (the market is closed at 09:25)
        working = client_order_id(SESSION, 0, "SSO")
        client.submit_order(MarketOrderRequest(symbol="SSO", qty=20, side=OrderSide.BUY,
                                               time_in_force=TimeInForce.DAY, client_order_id=working))
        with pytest.raises(APIError, match="wash trade"):  # what a sell beside it meets at the broker
            client.submit_order(MarketOrderRequest(symbol="SSO", qty=5, side=OrderSide.SELL,
                                                   time_in_force=TimeInForce.DAY, client_order_id="x-1"))
        settings = LoopSettings(universe=["SSO", "TQQQ"], warmup_sessions=1)
        live = TradingAttempt(alpaca_venue(config), engine, s, settings, clock=clock_for(config))
        live.prepare()
    live.portfolio.prices.update({"SSO": 100.0, "TQQQ": 50.0})
    deferred: list[str] = []
    intents = live.portfolio.intents({"SSO": 0.0, "TQQQ": 0.2}, live.universe, 100.0, deferred)
    assert [(i.symbol, i.side) for i in intents] == [("TQQQ", "buy")] and deferred == ["SSO"]


@pytest.mark.long
def test_bars_the_venue_corrects_are_stored_as_corrected(engine: Engine, tmp_path: Path) -> None:
    """With 30% of bars re-sent on updatedBars 30 market seconds later, what Postgres holds for every
    minute of the session equals what the broker serves for it afterwards."""
    s = session(SESSION)
    assert s is not None
    universe = ["SSO", "TQQQ", "SQQQ"]
    args = ["--corrections", "0.3"]
    with sim_run(tmp_path, args, speed=120, start="15:44") as sim:
        config = sim.config()
        clock = store_history(engine, config, universe)
        report = run_trading_attempt(alpaca_venue(config), engine, SESSION, clock=clock, params_override=BUSY,
                                  universe=universe, risk=RiskLimits(max_weight=0.4, daily_loss_limit=None),
                                  warmup_sessions=1)
        window = Window(s.close - timedelta(minutes=14), s.close - timedelta(minutes=2))  # corrections out by then
        broker = AlpacaMarketData(config).bars(universe, window)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT symbol, ts, close FROM bars WHERE ts >= :a AND ts < :b"),
                            {"a": window.start, "b": window.end})
        stored = {(r[0], r[1]): float(r[2]) for r in rows}
    final = {(r.symbol, r.timestamp.to_pydatetime()): float(r.close) for r in broker.itertuples()}
    assert stored == final
    assert report.bars_corrected > 0


@pytest.mark.long
def test_an_iex_like_market_is_decided_every_minute_without_refilling_no_trade_minutes(
    engine: Engine, tmp_path: Path
) -> None:
    """On the default market thin names miss minutes: every minute is still decided, in order, on the
    bars that exist; REST is asked only for the minutes before the stream was subscribed, and Postgres
    then holds exactly the bars the broker serves (a minute without trades has no bar on either side)."""
    s = session(SESSION)
    assert s is not None
    universe = list(DEFAULT_UNIVERSE)
    with sim_run(tmp_path, speed=60, start="15:25") as sim:
        config = sim.config()
        clock = store_history(engine, config, universe, lag=timedelta(minutes=2))
        report = run_trading_attempt(alpaca_venue(config), engine, SESSION, clock=clock, params_override=BUSY,
                                  universe=universe, risk=RiskLimits(max_weight=0.4, daily_loss_limit=None),
                                  warmup_sessions=1)
        window = Window(s.close - timedelta(minutes=20), s.close - timedelta(minutes=1))
        broker = AlpacaMarketData(config).bars(universe, window)
    with engine.connect() as conn:
        minutes = [r[0] for r in conn.execute(text("SELECT ts FROM decisions ORDER BY seq"))]
        stored = {(r[0], r[1]) for r in conn.execute(
            text("SELECT symbol, ts FROM bars WHERE ts >= :a AND ts < :b"), {"a": window.start, "b": window.end})}
        refills = conn.execute(text("SELECT payload FROM events WHERE kind = 'refill'")).scalars().all()
    assert minutes == [minutes[0] + timedelta(minutes=i) for i in range(len(minutes))]
    assert minutes[-1] == s.close - timedelta(minutes=1)
    served = {(r.symbol, r.timestamp.to_pydatetime()) for r in broker.itertuples()}
    assert len(served) < len(universe) * 19  # the market is sparse
    assert stored == served  # nothing missing, nothing invented
    assert report.minutes_without_bars > 0
    # REST was asked only for the minutes before the stream's subscription, never for a no-trade minute
    assert {r["why"] for r in refills} <= {"before the stream's subscription"}
    assert report.lateness_p50_s is not None and report.bars > 0 and report.orders > 0


@pytest.mark.long
def test_a_halted_symbol_gets_no_order_until_it_resumes(engine: Engine, tmp_path: Path) -> None:
    s = session(SESSION)
    assert s is not None
    universe = ["SSO", "TQQQ", "TNA"]
    args = ["--dense", "--halt", "TQQQ:15:44-15:50", "--seed-position", "TQQQ:50"]
    with sim_run(tmp_path, args, speed=60, start="15:36") as sim:
        config = sim.config()
        clock = store_history(engine, config, universe)
        report = run_trading_attempt(alpaca_venue(config), engine, SESSION, clock=clock, params_override=BUSY,
                                  universe=universe, risk=RiskLimits(max_weight=0.4, daily_loss_limit=None),
                                  warmup_sessions=1)
    with engine.connect() as conn:
        sent = conn.execute(text(
            "SELECT d.ts FROM orders o JOIN decisions d ON d.seq = o.decision_seq AND d.session_date = o.session_date"
            " WHERE o.symbol = 'TQQQ'")).scalars().all()
        kinds = conn.execute(text("SELECT kind FROM events")).scalars().all()
    assert [(h["symbol"], h["change"]) for h in report.halts] == [("TQQQ", "halted"), ("TQQQ", "resumed")]
    assert {"symbol_halted", "symbol_resumed"} <= set(kinds)
    halt_start, halt_end = s.close.replace(hour=20, minute=44), s.close.replace(hour=20, minute=50)
    assert not [t for t in sent if halt_start <= t + timedelta(minutes=1) <= halt_end]


@pytest.mark.long
def test_the_loss_stop_halts_the_session_for_every_later_attempt(engine: Engine, tmp_path: Path) -> None:
    """A loss limit the first minutes' slippage breaks: the stop closes the strategy's positions, stores
    HALTED (by openbell) and a retry of the same session restores it and sends nothing."""
    s = session(SESSION)
    assert s is not None
    universe = ["SSO", "TQQQ", "TNA"]
    args = ["--dense", "--slippage-bps", "80"]
    with sim_run(tmp_path, args, speed=60, start="15:30") as sim:
        config = sim.config()
        clock = store_history(engine, config, universe)
        risk = RiskLimits(max_weight=0.4, daily_loss_limit=0.001)
        opts = {"params_override": BUSY, "universe": universe, "risk": risk, "warmup_sessions": 1}

        async def first_attempt() -> AttemptReport:  # ends (cancelled, as a killed task would) at 15:45
            live = TradingAttempt(alpaca_venue(config), engine, s, LoopSettings(**opts), clock=clock)
            until = clock.wall_deadline(s.close - timedelta(minutes=15)) - time.time()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(live.run(), timeout=until)
            return live.report

        first = asyncio.run(first_attempt())
        held_after_first = {p.symbol: float(p.qty) for p in config.trading_client().get_all_positions()}
        orders_before = _count(engine, "SELECT count(*) FROM orders")
        second = run_trading_attempt(alpaca_venue(config), engine, SESSION, clock=clock, **opts)
    with engine.connect() as conn:
        state = conn.execute(text("SELECT risk_state, risk_by, risk_reason, open_equity FROM trading_sessions")).one()
    assert first.loss_stop and "daily loss" in first.loss_stop and first.risk_state == "HALTED"
    assert (state[0], state[1]) == ("HALTED", "openbell") and "daily loss" in state[2]
    assert float(state[3]) == pytest.approx(first.start_equity, rel=0.01)  # the broker's equity at the first start
    assert held_after_first == {}  # the stop closed what the strategy held
    assert second.risk_state == "HALTED" and second.orders == 0 and second.decisions > 0
    assert _count(engine, "SELECT count(*) FROM orders") == orders_before
