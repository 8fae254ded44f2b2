"""A Celery worker killed while it trades: two accounts' half days on CeleryExecutor with two workers on the
trading queue (and one on the default queue); when both accounts trade, the trading worker running most of them
is killed with every process of its session (SIGKILL, as its machine's crash would).

Run: ``.venv/bin/python -m bench worker_kill_bench``. Airflow finds a dead task by its missing heartbeats; its 300 s
timer is ten market hours at 120x, so the scheduler is restarted with the timers compressed like the day
(:data:`~openbell.runtime.platform_drills.COMPRESSED_TIMERS`), as the platform drills do. It prints how long the
killed accounts went without trading (market minutes from the kill to their next attempt), whether each resumed on
the other trading worker, and the morning-after checks of every account: its run succeeded, it was flat at the close,
the broker held nothing, and no client order id repeated.
"""

from __future__ import annotations

import tempfile
from datetime import date, datetime
from pathlib import Path
from typing import Any

from alpaca.trading.enums import QueryOrderStatus
from alpaca.trading.requests import GetOrdersRequest
from sqlalchemy import text

from openbell.runtime.accounts_rehearsal import rehearse_accounts
from openbell.runtime.airflow import session_processes
from openbell.runtime.drill_kit import market_now, running_attempt, wait_for
from openbell.runtime.platform_drills import COMPRESSED_TIMERS
from openbell.runtime.rehearsal import Rehearsal

DAY = date(2025, 11, 28)
NAMES = ("acct1", "acct2")


def _trading(day: Rehearsal) -> dict[str, Any] | None:
    row = running_attempt(day, "live_trading")
    if row is None:
        return None
    with day.engine.connect() as conn:
        decided = conn.execute(text("SELECT count(*) FROM decisions")).scalar_one()
    return row if decided else None


def _worker_of(day: Rehearsal, pid: int) -> str | None:
    for name, proc in day.stack.procs.items():
        if name.startswith("worker-") and pid in {proc.pid, *session_processes({proc.pid})}:
            return name
    return None


def _kill_a_trading_worker(days: dict[str, Rehearsal], facts: dict[str, Any]) -> None:
    rows = wait_for("every account trading", lambda: all(map(_trading, days.values())) and
                    {n: _trading(d) for n, d in days.items()}, timeout=600, poll=0.5)
    first = next(iter(days.values()))
    owners = {n: _worker_of(first, int(r["summary"]["process"]["pid"])) for n, r in rows.items()}
    victim = max((w for w in owners.values() if w), key=list(owners.values()).count)
    killed = [n for n, w in owners.items() if w == victim]
    facts.update(victim=victim, killed=killed, killed_at=market_now(first))
    first.stack.kill(victim)
    first.stack.restart("scheduler", env=COMPRESSED_TIMERS)
    for name in killed:
        day = days[name]
        row = wait_for(f"{name}'s next live_trading attempt", lambda d=day, old=rows[name]["id"]: (
            (r := running_attempt(d, "live_trading")) and r["id"] != old and r), timeout=600, poll=0.5)
        facts.setdefault("resumed_at", {})[name] = market_now(day)
        facts.setdefault("resumed_on", {})[name] = _worker_of(day, int(row["summary"]["process"]["pid"]))


def _broker(day: Rehearsal, name: str) -> dict[str, Any]:
    client = day.sim.config(name).trading_client()
    orders = client.get_orders(GetOrdersRequest(status=QueryOrderStatus.ALL, limit=500, nested=False))
    return {"ids": [o.client_order_id for o in orders], "positions": len(client.get_all_positions())}


def run() -> list[tuple[str, float, str]]:
    """Measure and print (name, value, unit) rows."""
    facts: dict[str, Any] = {}
    seen: dict[str, Any] = {}

    def finished(days: dict[str, Rehearsal]) -> None:
        seen.update({n: _broker(d, n) for n, d in days.items()})

    with tempfile.TemporaryDirectory(prefix="ob-worker-kill-") as tmp:
        results = rehearse_accounts(DAY, list(NAMES), home=Path(tmp), start="10:00", executor="celery",
                                    trading_workers=2, progress=print,
                                    on_running=lambda days: _kill_a_trading_worker(days, facts),
                                    on_finished=finished)
    killed_at: datetime = facts["killed_at"]
    gaps = [(at - killed_at).total_seconds() / 60 for at in facts.get("resumed_at", {}).values()]
    other = sum(1 for n in facts["killed"] if facts.get("resumed_on", {}).get(n) not in (None, facts["victim"]))
    ids = [i for n in NAMES for i in seen[n]["ids"]]
    rows = [
        ("accounts whose live_trading ran on the killed worker", float(len(facts["killed"])), f"of {len(NAMES)}"),
        ("killed at", killed_at.hour * 100 + killed_at.minute, "HHMM ET"),
        ("longest time without trading (kill to next attempt)", max(gaps, default=float("nan")), "market min"),
        ("killed accounts resumed on the other trading worker", float(other), f"of {len(facts['killed'])}"),
        ("runs succeeded", float(sum(r.run_state == "success" for r in results.values())), f"of {len(NAMES)}"),
        ("accounts flat at the close (report)", float(sum(bool(r.report["flat_at_close"]) for r in results.values())),
         f"of {len(NAMES)}"),
        ("positions the broker held after the close", float(sum(seen[n]["positions"] for n in NAMES)), "positions"),
        ("client order ids repeated", float(len(ids) - len(set(ids))), "ids"),
    ]
    for name, value, unit in rows:
        print(f"{name:<60} {value:>10.3f} {unit}")
    return rows


if __name__ == "__main__":
    run()
