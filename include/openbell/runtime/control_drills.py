"""Drills of the operator's controls: the loss stop that holds across a crash, and a flatten and resume
through the ``trading_control`` DAG, triggered through Airflow's REST API as the admin user would."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import quote

from sqlalchemy import text

from openbell.adapters.alpaca.venue import alpaca_venue
from openbell.runtime.airflow import TERMINAL
from openbell.runtime.airflow_api import ADMIN
from openbell.runtime.demo import Rehearsal
from openbell.runtime.drill_kit import (
    CHURN,
    Drill,
    kill_attempt,
    market_at,
    market_now,
    running_attempt,
    session_date,
    wait_for,
)
from openbell.store.sessions import get_risk


def risk_state(day: Rehearsal) -> str:
    return get_risk(day.engine, session_date(day)).state


def _strategy_orders_between(day: Rehearsal, start: datetime, end: datetime) -> int:
    """Strategy orders decided between ``start`` and ``end`` (market time): a minute is decided once it
    has ended, so its end is compared (a minute that ends after a resume is decided after it)."""
    with day.engine.connect() as conn:
        return int(conn.execute(text(
            "SELECT count(*) FROM orders o JOIN decisions d ON d.session_date = o.session_date"
            " AND d.seq = o.decision_seq WHERE o.origin = 'strategy' AND o.session_date = :s"
            " AND d.ts + interval '1 minute' > :a AND d.ts + interval '1 minute' <= :b"),
            {"s": session_date(day), "a": start, "b": end}).scalar_one())


def _control(day: Rehearsal, action: str, reason: str, facts: dict[str, Any]) -> dict[str, Any]:
    """Trigger the account's ``trading_control`` as the admin user and wait for its run to end."""
    run = day.stack.request("POST", f"/api/v2/dags/{day.control_dag}/dagRuns",
                            json={"logical_date": None, "conf": {"action": action, "reason": reason}})
    run_id = str(run["dag_run_id"])
    path = f"/api/v2/dags/{day.control_dag}/dagRuns/{quote(run_id, safe='')}"
    done = wait_for(f"the {action} run", lambda: (r := day.stack.get(path))["state"] in TERMINAL and r, timeout=300)
    facts.setdefault("controls", []).append({"action": action, "run_id": run_id, "state": done["state"],
                                             "triggered_by": done.get("triggering_user_name"),
                                             "ended_at": market_now(day).isoformat()})
    return dict(done)


def _flatten_then_resume(day: Rehearsal, facts: dict[str, Any]) -> None:
    wait_for("live trading at 14:45", lambda: market_at(day, "14:45") and running_attempt(day, "live_trading"),
             timeout=600, poll=0.25)
    broker = alpaca_venue(day.sim.config()).broker
    facts["held_before_flatten"] = {p.symbol: p.qty for p in broker.positions()}
    _control(day, "flatten", "drill: flatten at 14:45", facts)
    halted = get_risk(day.engine, session_date(day))
    facts["halted_at"] = halted.changed_at.isoformat() if halted.changed_at else None
    facts["halted_by"] = halted.by
    facts["flat_after_flatten"] = {p.symbol: p.qty for p in broker.positions()}
    wait_for("15:15", lambda: market_at(day, "15:15"), timeout=600, poll=0.25)
    _control(day, "resume", "drill: resume at 15:15", facts)
    resumed = get_risk(day.engine, session_date(day))
    facts["resumed_at"] = resumed.changed_at.isoformat() if resumed.changed_at else None
    wait_for("15:45", lambda: market_at(day, "15:45"), timeout=600, poll=0.25)
    if halted.changed_at and resumed.changed_at:
        facts["orders_while_halted"] = _strategy_orders_between(day, halted.changed_at, resumed.changed_at)
        facts["orders_after_resume"] = _strategy_orders_between(day, resumed.changed_at, market_now(day))


def _kill_after_loss_stop(day: Rehearsal, facts: dict[str, Any]) -> None:
    wait_for("the loss stop", lambda: risk_state(day) == "HALTED", timeout=600, poll=0.25)
    stopped = get_risk(day.engine, session_date(day))
    facts["stopped"] = {"by": stopped.by, "reason": stopped.reason,
                        "at": stopped.changed_at.isoformat() if stopped.changed_at else None}
    broker = alpaca_venue(day.sim.config()).broker
    facts["held_after_stop"] = wait_for(
        "the stop's closing orders to fill", lambda: not broker.positions() and {"flat": True}, timeout=120)
    killed = kill_attempt(day, "live_trading", facts)
    retry = wait_for("the next live_trading attempt", lambda: (r := running_attempt(day, "live_trading"))
                     and r["id"] != killed["id"] and r, timeout=180)
    facts["retry_attempt"] = retry["attempt"]


def _loss_stop_while_exposed(day: Rehearsal, facts: dict[str, Any]) -> None:
    """The loss stop trips while SSO is halted (until 15:00) and the closes outnumber the one-order-a-minute
    limit: the account must be flat within two minutes of the halt's end, then HALTED; a retry stays so."""
    broker = alpaca_venue(day.sim.config()).broker
    tripped = wait_for("the loss stop", lambda: (r := get_risk(day.engine, session_date(day))).cause == "loss_stop"
                       and r, timeout=600, poll=0.25)
    facts["tripped"] = {"state": tripped.state, "by": tripped.by, "reason": tripped.reason,
                        "at": tripped.changed_at.isoformat() if tripped.changed_at else None}
    facts["held_at_trip"] = {p.symbol: p.qty for p in broker.positions()}
    flat_at = wait_for("the loss stop's closes to fill", lambda: not broker.positions() and market_now(day),
                       timeout=600, poll=0.25)
    facts["flat_at"] = flat_at.isoformat()
    halted = wait_for("HALTED", lambda: (r := get_risk(day.engine, session_date(day))).state == "HALTED" and r,
                      timeout=300, poll=0.25)
    facts["halted"] = facts["stopped"] = {"by": halted.by, "cause": halted.cause, "reason": halted.reason,
                                          "at": halted.changed_at.isoformat() if halted.changed_at else None}
    with day.engine.connect() as conn:  # the strategy's orders from the decision the stop zeroed first
        facts["orders_after_trip"] = [list(r) for r in conn.execute(text(
            "SELECT d.seq, o.symbol, o.side FROM orders o JOIN decisions d ON d.session_date = o.session_date"
            " AND d.seq = o.decision_seq WHERE o.origin = 'strategy' AND o.session_date = :s AND d.seq >= ("
            "  SELECT min(seq) FROM decisions WHERE session_date = :s"
            "  AND targets->>'notes' LIKE '%stopped for the day%') ORDER BY d.seq, o.symbol"),
            {"s": session_date(day)})]
        facts["refused_after_trip"] = [r[0] for r in conn.execute(text(
            "SELECT payload FROM events WHERE session_date = :s AND kind = 'order_refused' AND"
            " (payload->>'decision_seq')::int >= (SELECT min(seq) FROM decisions WHERE session_date = :s"
            "  AND targets->>'notes' LIKE '%stopped for the day%')"), {"s": session_date(day)})]
    killed = kill_attempt(day, "live_trading", facts)
    retry = wait_for("the next live_trading attempt", lambda: (r := running_attempt(day, "live_trading"))
                     and r["id"] != killed["id"] and r, timeout=180)
    facts["retry_attempt"] = retry["attempt"]


# The deployment's defaults for the loss-stop drill's scheduled run: a 3% loss limit (two buys of a quarter of
# the equity filled 8% worse than the market trip it), one order a minute (the stop's closes outnumber it), and
# the default strategy entering on any positive score, so that it fills both of its slots when trading starts.
TIGHT = '{"daily_loss_limit": 0.03, "max_orders_per_minute": 1, "strategy_params": {"threshold": 0.0}}'
SSO_HALT_ENDS = "15:20"  # trading starts about 14:50 at 120x (the data steps come first)

CONTROL_DRILLS = (
    Drill("loss_stop", "fills 8% worse than the market trip the daily loss stop soon after trading starts; "
          "live_trading is SIGKILLed once HALTED and flat, and its retry stays HALTED and flat",
          sim_args=("--slippage-bps", "800"), inject=_kill_after_loss_stop),
    Drill("loss_stop_exposed", "buys filled 8% worse than the market trip a 3% loss stop while SSO (held from "
          f"before the day, NYSE Arca) is halted until {SSO_HALT_ENDS} and the closes of what the strategy bought "
          "outnumber the one-order-a-minute limit: flat within two minutes of the halt's end, then HALTED; "
          "live_trading is SIGKILLed then and its retry stays HALTED",
          sim_args=("--slippage-bps", "800", "--seed-position", "SSO:200", "--halt", f"SSO:14:16-{SSO_HALT_ENDS}"),
          run_defaults=TIGHT, inject=_loss_stop_while_exposed),
    Drill("flatten_and_resume", f"the {ADMIN} user runs trading_control flatten at 14:45 (flat, HALTED, no order) "
          "and resume at 15:15 (a strategy rebalancing every minute trades again); AAPL 10, outside the universe, "
          "is held until the flatten", sim_args=("--seed-position", "AAPL:10"), run_defaults=CHURN,
          inject=_flatten_then_resume),
)
