"""A Celery worker lost while it trades: the drill that kills the trading worker running most accounts.

Used by the accounts' end-to-end test and ``make bench``'s ``worker_kill_bench``, on a rehearsal of several
accounts with two workers on the trading queue (:func:`~openbell.runtime.accounts_rehearsal.rehearse_accounts`,
``trading_workers=2``). Once every account has decided a minute, the worker running the most ``live_trading``
attempts is killed with every process of its session (SIGKILL, as its machine's crash would). Airflow finds a dead
task by its missing heartbeats; its 300 s timer is ten market hours at 120x, so the scheduler is restarted with
the timers compressed like the day (:data:`~openbell.runtime.platform_drills.COMPRESSED_TIMERS`), as the platform
drills do. The drill then waits for each killed account's next attempt and records where it runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import text

from openbell.runtime.airflow import session_processes
from openbell.runtime.drill_kit import market_now, running_attempt, wait_for
from openbell.runtime.platform_drills import COMPRESSED_TIMERS
from openbell.runtime.rehearsal import Rehearsal


@dataclass
class WorkerKill:
    """What the drill did: the worker killed, when (market time), the accounts it was trading, and for each of
    them when its next attempt ran (market time) and on which worker."""

    victim: str
    killed: list[str]
    killed_at: datetime
    resumed_at: dict[str, datetime] = field(default_factory=dict)
    resumed_on: dict[str, str | None] = field(default_factory=dict)

    def gaps_minutes(self) -> list[float]:
        """Market minutes from the kill to each killed account's next attempt."""
        return [(t - self.killed_at).total_seconds() / 60 for t in self.resumed_at.values()]

    def moved(self) -> list[str]:
        """The killed accounts whose next attempt ran on another worker."""
        return [n for n in self.killed if self.resumed_on.get(n) not in (None, self.victim)]


def _trading(day: Rehearsal) -> dict[str, Any] | None:
    """The running ``live_trading`` attempt's ledger row, once it has decided a minute."""
    row = running_attempt(day, "live_trading")
    if row is None:
        return None
    with day.engine.connect() as conn:
        decided = conn.execute(text("SELECT count(*) FROM decisions")).scalar_one()
    return row if decided else None


def worker_of(day: Rehearsal, pid: int) -> str | None:
    """The Celery worker (its process name) whose session process ``pid`` is."""
    for name, proc in day.stack.procs.items():
        if name.startswith("worker-") and pid in {proc.pid, *session_processes({proc.pid})}:
            return name
    return None


def kill_a_trading_worker(days: Mapping[str, Rehearsal], *, timeout: float = 600) -> WorkerKill:
    """When every account trades, kill the trading worker running most of them, restart the scheduler with the
    compressed timers, and wait for each killed account's next ``live_trading`` attempt."""
    rows = wait_for("every account trading", lambda: all(map(_trading, days.values())) and
                    {n: _trading(d) for n, d in days.items()}, timeout=timeout, poll=0.5)
    first = next(iter(days.values()))
    owners = {n: worker_of(first, int(r["summary"]["process"]["pid"])) for n, r in rows.items()}
    victim = max((w for w in owners.values() if w), key=list(owners.values()).count)
    kill = WorkerKill(victim, [n for n, w in owners.items() if w == victim], market_now(first))
    first.stack.kill(victim)
    first.stack.restart("scheduler", env=COMPRESSED_TIMERS)
    for name in kill.killed:
        day = days[name]
        row = wait_for(f"{name}'s next live_trading attempt", lambda d=day, old=rows[name]["id"]: (
            (r := running_attempt(d, "live_trading")) and r["id"] != old and r), timeout=timeout, poll=0.5)
        kill.resumed_at[name] = market_now(day)
        kill.resumed_on[name] = worker_of(day, int(row["summary"]["process"]["pid"]))
    return kill
