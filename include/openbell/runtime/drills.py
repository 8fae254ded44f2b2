"""Fault drills: a simulated session through Airflow with one fault injected, then the day's invariants.

Every drill ends with the checks a trader would make the morning after: the run and every step
succeeded, the account is flat and the position book agrees, no ``client_order_id`` was submitted
twice, every broker order is in Postgres, and every minute the broker has a bar for is in the bars table
(a minute without trades has no bar on either side). ``openbell drill NAME`` runs one; the end-to-end tests
and ``make bench`` run them all."""

from __future__ import annotations

import logging
import shutil
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text

from openbell import calendar
from openbell.adapters.alpaca.venue import alpaca_venue
from openbell.broker import book
from openbell.broker.ids import is_ours
from openbell.params import DEFAULT_UNIVERSE
from openbell.pg.throwaway import reachable_tempdir
from openbell.ports import MarketDataPort, Window
from openbell.runtime.control_drills import CONTROL_DRILLS
from openbell.runtime.drill_kit import (
    CHURN,
    EVERY_STEP,
    Drill,
    kill_attempt,
    market_at,
    market_now,
    phase,
    running_attempt,
    session_date,
    task_state,
    wait_for,
)
from openbell.runtime.platform_drills import PLATFORM_DRILLS, short_tokens
from openbell.runtime.rehearsal import DayResult, Rehearsal, rehearse
from openbell.store.ledger import steps_for

log = logging.getLogger(__name__)

@dataclass
class DrillResult:
    """A drill's outcome: the broken invariants (none when it passed) and what was observed."""

    drill: str
    violations: list[str]
    facts: dict[str, Any] = field(default_factory=dict)
    day: DayResult | None = None

    @property
    def passed(self) -> bool:
        return not self.violations


# -- the faults -----------------------------------------------------------------------------------


def _kill_trading(day: Rehearsal, facts: dict[str, Any], *, clear: bool = False) -> None:
    wait_for("live trading at 15:05", lambda: market_at(day, "15:05") and running_attempt(day, "live_trading"))
    killed = kill_attempt(day, "live_trading", facts)
    if clear:
        state = wait_for("Airflow to see the attempt fail",
                         lambda: (s := task_state(day, "live_trading")) in ("up_for_retry", "failed") and s)
        facts["state_before_clear"] = state
        facts["cleared"] = day.stack.clear_task(day.run_id, "live_trading")
    retry = wait_for("the next live_trading attempt", lambda: (r := running_attempt(day, "live_trading"))
                     and r["id"] != killed["id"] and r, timeout=120)
    facts["retry_started"] = retry["started"].isoformat()


def _kill_liquidation(day: Rehearsal, facts: dict[str, Any]) -> None:
    wait_for("the liquidation to start", lambda: phase(day) == "liquidating" and running_attempt(day, "eod_liquidate"),
             timeout=600, poll=0.02)
    kill_attempt(day, "eod_liquidate", facts)


def _kill_liquidation_twice(day: Rehearsal, facts: dict[str, Any]) -> None:
    """Kill the liquidation's first attempt once it set the phase, then its retry as soon as it runs."""
    _kill_liquidation(day, facts)
    first = facts["killed"][-1]["attempt"]
    wait_for("the liquidation's retry", lambda: (r := running_attempt(day, "eod_liquidate"))
             and r["attempt"] > first, timeout=300, poll=0.02)
    kill_attempt(day, "eod_liquidate", facts)


def _refuse_one_reconnect(day: Rehearsal, facts: dict[str, Any]) -> None:
    # Three drops come from the command line; only the second one's reconnects are refused (406) for 30 s.
    wait_for("14:50", lambda: market_at(day, "14:50"), timeout=600, poll=0.25)
    day.sim.set_faults(refuse_reconnect_seconds=30)
    wait_for("15:10", lambda: market_at(day, "15:10"), timeout=600, poll=0.25)
    day.sim.set_faults(refuse_reconnect_seconds=0)


def _restart_postgres(day: Rehearsal, facts: dict[str, Any]) -> None:
    wait_for("live trading at 15:05", lambda: market_at(day, "15:05") and running_attempt(day, "live_trading"),
             timeout=600, poll=0.25)
    facts["postgres_stopped_at"] = market_now(day).isoformat()
    day.server.stop()
    time.sleep(3)
    day.server.start()
    facts["postgres_started_at"] = market_now(day).isoformat()


def _orders_at_the_cut_off(day: Rehearsal, facts: dict[str, Any]) -> None:
    """After the close: the strategy's orders the broker took, and those it took at or after the cut-off."""

    wait_for("the close", lambda: market_at(day, "16:00"), timeout=900, poll=0.5)
    s = calendar.session(session_date(day))
    assert s is not None
    cut_off = s.close - timedelta(minutes=2)
    broker = alpaca_venue(day.sim.config()).broker
    ours = [o for o in broker.orders("all") if is_ours(o.client_order_id)]  # a rehearsal's: the default account
    facts["strategy_orders"] = len(ours)
    facts["cut_off"] = cut_off.isoformat()
    facts["strategy_orders_at_or_after_cut_off"] = sorted(
        f"{o.client_order_id} at {o.submitted_at.isoformat()}" for o in ours
        if o.submitted_at is not None and o.submitted_at >= cut_off)


DRILLS: dict[str, Drill] = {d.name: d for d in (
    Drill("sparse_day", "a whole session on the IEX-like default market (thin names miss minutes), with a "
          "position outside the universe held overnight (market seed 7) and a 30 s execution-token lifetime",
          start="09:10", sim_args=("--seed", "7", "--seed-position", "AAPL:7"), inject=short_tokens,
          breaks_airflow=True),
    Drill("corrections", "a fifth of the bars are re-sent corrected on updatedBars 30 market seconds later",
          sim_args=("--corrections", "0.2")),
    Drill("halt_and_resume", "SSO (NYSE Arca: Tape B, so status 2 at the halt and 3 at the resumption) is "
          "halted from 15:10 to 15:40 (no bars, orders held by the broker)",
          sim_args=("--halt", "SSO:15:10-15:40", "--seed-position", "SSO:40")),
    Drill("reverse_split", "SQQQ reverse-splits 1-for-10 at the open of 2025-11-17, inside the warmup and the "
          "optimizer's 20 sessions", sim_args=("--split", "SQQQ:0.1:2025-11-17")),
    Drill("rejections", "a short of 120 MSFT held from before the day leaves buying power below equity: buys "
          "of a strategy rebalancing every minute are fitted to it, and what the broker still refuses is resized "
          "once", sim_args=("--seed-position", "MSFT:-120"), run_defaults=CHURN),
    Drill("rate_limited", "the broker allows 30 Trading API requests a minute (Alpaca: 200) and openbell's "
          "connection says so: orders, syncs and lookups share that budget", sim_args=("--rate-limit", "30")),
    Drill("slow_close", "from 15:50 at 10x a strategy rebalancing every minute meets a broker that allows 12 "
          "Trading API requests a minute (openbell's connection says so): an order that would wait for the budget "
          "past the 15:58 cut-off is not sent; no order of the strategy reaches the broker at or after it and the "
          "broker holds nothing after the close",
          start="15:50", speed=10.0, sim_args=("--rate-limit", "12"), run_defaults=CHURN,
          inject=_orders_at_the_cut_off),
    Drill("halt_at_close", "AAPL (held from before the day, outside the universe) is halted from 15:50 through "
          "the close: the liquidation cannot close it and must fail saying so",
          sim_args=("--halt", "AAPL:15:50-close", "--seed-position", "AAPL:40"), held=("AAPL",)),
    Drill("foreign_positions", "held from before the day: a fraction and a short outside the universe (AAPL 3.25, "
          "MSFT -2.5), a fraction and a short in it (TQQQ 10.5, SQQQ -20)",
          sim_args=("--seed-position", "AAPL:3.25", "--seed-position", "MSFT:-2.5", "--seed-position", "TQQQ:10.5",
                    "--seed-position", "SQQQ:-20")),
    Drill("kill_trading_retry", "the trading task's process is SIGKILLed at 15:05; Airflow retries it",
          inject=_kill_trading),
    Drill("kill_trading_clear", "the trading task's process is SIGKILLed at 15:05; a user clears the task",
          inject=lambda day, facts: _kill_trading(day, facts, clear=True)),
    Drill("stream_drops", "the streams drop at 14:40, 15:00 and 15:40; the second drop's reconnects get 406 for 30 s",
          start="14:00", speed=60.0,
          sim_args=("--drop-streams-at", "14:40", "--drop-streams-at", "15:00", "--drop-streams-at", "15:40"),
          inject=_refuse_one_reconnect),
    Drill("stream_silence", "the data stream stays connected but sends nothing from 15:05 for 5 minutes",
          sim_args=("--silence-at", "15:05:5")),
    Drill("rest_errors", "30% of REST calls are answered 429 or 500 all day", sim_args=("--rest-error-rate", "0.3")),
    Drill("postgres_restart", "openbell's Postgres restarts at 15:05 (down about 3 s wall)",
          inject=_restart_postgres, separate_state_server=True),
    Drill("kill_liquidation", "eod_liquidate's process is SIGKILLed mid-way; Airflow reruns it",
          start="15:50", speed=10.0, inject=_kill_liquidation),
    Drill("kill_liquidation_twice", "eod_liquidate's process is SIGKILLed, then its retry too; the third attempt "
          "is flat before the close (TQQQ 40 held from before the day)", start="15:50", speed=4.0,
          sim_args=("--seed-position", "TQQQ:40"), inject=_kill_liquidation_twice),
    Drill("kill_liquidation_twice_half_day", "kill_liquidation_twice on the half day 2025-11-28 (close 13:00 ET)",
          date=date(2025, 11, 28), start="12:50", speed=4.0, sim_args=("--seed-position", "TQQQ:40"),
          inject=_kill_liquidation_twice),
)}
DRILLS.update({d.name: d for d in (*PLATFORM_DRILLS, *CONTROL_DRILLS)})


# -- the checks -----------------------------------------------------------------------------------


def _broker_view(day: Rehearsal) -> dict[str, Any]:

    broker = alpaca_venue(day.sim.config()).broker
    orders = broker.orders("all")
    positions = broker.positions()
    health = day.sim.health()
    return {
        "client_order_ids": [o.client_order_id for o in orders],
        "positions": {p.symbol: p.qty for p in positions},
        "duplicate_submissions": int(health["broker"]["duplicate_client_order_ids"]),
        "faults": day.sim.faults()["counters"],
        "rate_limit": health.get("rate_limit") or {},
    }


def missing_minutes(engine: Engine, session_date: date, symbols: tuple[str, ...],
                    data: MarketDataPort) -> dict[str, int]:
    """Per symbol, how many of the session's minutes the broker has a bar for and Postgres has not (symbols
    missing none left out). A minute without trades has no bar at the broker either: it is not missing."""
    s = calendar.session(session_date)
    assert s is not None
    served = data.bars(list(symbols), Window(s.open, s.close))
    with engine.connect() as conn:
        stored = set(conn.execute(
            text("SELECT symbol, ts FROM bars WHERE symbol = ANY(:syms) AND ts >= :a AND ts < :b"),
            {"syms": list(symbols), "a": s.open, "b": s.close},
        ).tuples())
    missing = Counter(r.symbol for r in served.itertuples()
                      if (r.symbol, r.timestamp.to_pydatetime()) not in stored)
    return dict(sorted(missing.items()))


def _ledger_facts(engine: Engine, d: date) -> dict[str, Any]:
    """Per step, each attempt's status, error and the counts it recovered."""
    keep = ("reconnects", "stream_restarts", "refills", "refilled_bars", "first_seq", "decisions", "orders",
            "abandoned_attempts", "writer", "first_live_decision_at", "bars_corrected", "halts", "orders_halted",
            "minutes_without_bars", "rejections_by_reason", "rejected", "lateness_p50_s", "lateness_p99_s",
            "orders_scaled", "orders_resized", "adjustment", "jumps", "adopted", "started_at", "finished_at",
            "late", "risk_state", "loss_stop", "orders_not_sent", "orders_past_deadline",
            "orders_gate_closed")
    out: dict[str, Any] = {}
    for row in steps_for(engine, d):
        summary = row["summary"] or {}
        out.setdefault(row["step"], []).append(
            {"attempt": row["attempt"], "status": row["status"], "error": (row["error"] or "")[:300],
             **{k: summary[k] for k in keep if k in summary}}
        )
    return out


def check_day(result: DayResult, seen: dict[str, Any], held: tuple[str, ...] = ()) -> list[str]:
    """The invariants every drill must keep; each broken one is a sentence. ``held``: symbols a halt keeps
    open past the close, for which the liquidation must fail, naming them, and nothing else may."""
    report = result.report
    bad: list[str] = []
    steps = {s["step"]: s for s in report["steps"]}
    expected = {name: "success" for name in EVERY_STEP}
    if held:
        expected["eod_liquidate"] = "failed"
        error = steps.get("eod_liquidate", {}).get("error") or ""
        unnamed = [s for s in held if s not in error]
        if unnamed:
            bad.append(f"the failed liquidation does not name {unnamed}: {error[:300]!r}")
    if result.run_state != ("failed" if held else "success"):
        bad.append(f"the run ended {result.run_state}: {result.task_states}")
    for name, want in expected.items():
        status = steps.get(name, {}).get("status")
        if status != want:
            bad.append(f"step {name} ended {status}, expected {want}")
    left = {s: q for s, q in seen["positions"].items() if s not in held}
    if left or (not held and not report["flat_at_close"]) or set(held) - set(seen["positions"]):
        bad.append(f"positions at the close: broker {seen['positions']} (expected only {list(held)}), "
                   f"report flat_at_close={report['flat_at_close']}")
    if seen["book"] != seen["positions"]:
        bad.append(f"the position book {seen['book']} disagrees with the broker {seen['positions']}")
    twice = {c: n for c, n in Counter(seen["client_order_ids"]).items() if n > 1}
    if twice or seen["duplicate_submissions"]:
        bad.append(f"client_order_id submitted twice: {twice or seen['duplicate_submissions']}")
    unsettled = sorted(f"{o['client_order_id']} ({o['status']})" for o in report["orders"]
                       if o["status"] not in book.FINAL_STATUSES and o["symbol"] not in held)
    if unsettled:
        bad.append(f"orders not final at the end of the day: {unsettled}")
    missing = set(seen["client_order_ids"]) - {o["client_order_id"] for o in report["orders"]}
    if missing:
        bad.append(f"broker orders missing from Postgres: {sorted(missing)}")
    if seen["holes"]:
        bad.append(f"minutes the broker has bars for, missing from the bars table: {seen['holes']}")
    return bad


class DrillWatch:
    """What one drill does to its day and sees of it: the fault injected once the run exists
    (:meth:`on_running`), the broker, the ledger and the bars once it ended (:meth:`finished`, while the simulator
    and Postgres still answer), and the morning-after checks of the result (:meth:`result`)."""

    def __init__(self, drill: Drill, on_finished: Callable[[Rehearsal], None] | None = None) -> None:
        self.drill, self.on_finished = drill, on_finished
        self.facts: dict[str, Any] = {"about": drill.about}
        self.seen: dict[str, Any] = {}
        self.started = time.monotonic()

    def on_running(self, day: Rehearsal) -> None:
        if self.drill.inject is not None:
            self.drill.inject(day, self.facts)

    def finished(self, day: Rehearsal) -> None:
        if self.on_finished is not None:
            self.on_finished(day)
        self.seen.update(_broker_view(day))
        data = alpaca_venue(day.sim.config()).market_data
        self.seen["holes"] = missing_minutes(day.engine, self.drill.date, DEFAULT_UNIVERSE, data)
        with day.engine.connect() as conn:
            self.seen["book"] = {s: q for s, (q, _) in book.book_positions(conn, self.drill.date).items() if q != 0}
        self.facts["ledger"] = _ledger_facts(day.engine, self.drill.date)
        self.facts["trading_tries"] = [
            {k: t.get(k) for k in ("try_number", "state", "start_date", "end_date")}
            for t in day.stack.task_tries(day.run_id, "live_trading")
        ]

    def result(self, day: DayResult) -> DrillResult:
        """The drill's outcome from its day's result (after :meth:`finished`)."""
        self.facts["wall_seconds"] = round(time.monotonic() - self.started, 1)
        self.facts["faults"] = self.seen["faults"]
        self.facts["rate_limit"] = self.seen["rate_limit"]
        return DrillResult(self.drill.name, check_day(day, self.seen, self.drill.held), self.facts, day)

    def failed(self, exc: BaseException) -> DrillResult:
        """The outcome of a drill whose day could not run to its end."""
        return DrillResult(self.drill.name, [f"the drill could not run: {type(exc).__name__}: {exc}"], self.facts)


def run_drill(drill: Drill, home: Path, *, progress: Callable[[str], None] = log.info,
              on_finished: Callable[[Rehearsal], None] | None = None) -> DrillResult:
    """Run one drill on a stage of its own in ``home`` (a scratch directory) and check the day; ``on_finished``
    is called after the day, while the simulator still answers."""
    watch = DrillWatch(drill, on_finished)
    try:
        day = rehearse(drill.date, speed=drill.speed, start=drill.start, sim_args=drill.sim_args, home=home,
                       separate_state_server=drill.separate_state_server, progress=progress,
                       on_running=watch.on_running, on_finished=watch.finished, run_defaults=drill.run_defaults)
    except Exception as exc:
        return watch.failed(exc)
    return watch.result(day)


def run_in_scratch(drill: str | Drill, parent: Path, **kw: Any) -> DrillResult:
    """Run ``drill`` (or the drill of that name) in a fresh scratch home under ``parent``, removed afterwards."""
    home = reachable_tempdir(parent, "openbell-drill-")
    try:
        return run_drill(DRILLS[drill] if isinstance(drill, str) else drill, home, **kw)
    finally:
        shutil.rmtree(home, ignore_errors=True)
