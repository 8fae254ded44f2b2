"""A Celery worker killed while it trades: two accounts' half days on CeleryExecutor with two workers on the
trading queue (and one on the default queue); when both accounts trade, the trading worker running most of them
is killed with every process of its session (:mod:`openbell.runtime.worker_kill`, which the accounts' end-to-end
test runs too).

Run: ``.venv/bin/python -m bench worker_kill_bench``. It prints how long the killed accounts went without trading
(market minutes from the kill to their next attempt), whether each resumed on the other trading worker, and the
morning-after checks of every account: its run succeeded, it was flat at the close, the broker held nothing, and
no client order id repeated.
"""

from __future__ import annotations

import tempfile
from datetime import date
from pathlib import Path
from typing import Any

from alpaca.trading.enums import QueryOrderStatus
from alpaca.trading.requests import GetOrdersRequest

from openbell.runtime.accounts_rehearsal import rehearse_accounts
from openbell.runtime.rehearsal import Rehearsal
from openbell.runtime.worker_kill import WorkerKill, kill_a_trading_worker

DAY = date(2025, 11, 28)
NAMES = ("acct1", "acct2")


def _broker(day: Rehearsal, name: str) -> dict[str, Any]:
    client = day.sim.config(name).trading_client()
    orders = client.get_orders(GetOrdersRequest(status=QueryOrderStatus.ALL, limit=500, nested=False))
    return {"ids": [o.client_order_id for o in orders], "positions": len(client.get_all_positions())}


def run() -> list[tuple[str, float, str]]:
    """Measure and print (name, value, unit) rows."""
    kills: list[WorkerKill] = []
    seen: dict[str, Any] = {}

    def finished(days: dict[str, Rehearsal]) -> None:
        seen.update({n: _broker(d, n) for n, d in days.items()})

    with tempfile.TemporaryDirectory(prefix="ob-worker-kill-") as tmp:
        results = rehearse_accounts(DAY, list(NAMES), home=Path(tmp), start="10:00", executor="celery",
                                    trading_workers=2, progress=print,
                                    on_running=lambda days: kills.append(kill_a_trading_worker(days)),
                                    on_finished=finished)
    kill = kills[0]
    killed_at, gaps = kill.killed_at, kill.gaps_minutes()
    ids = [i for n in NAMES for i in seen[n]["ids"]]
    rows = [
        ("accounts whose live_trading ran on the killed worker", float(len(kill.killed)), f"of {len(NAMES)}"),
        ("killed at", killed_at.hour * 100 + killed_at.minute, "HHMM ET"),
        ("longest time without trading (kill to next attempt)", max(gaps, default=float("nan")), "market min"),
        ("killed accounts resumed on the other trading worker", float(len(kill.moved())), f"of {len(kill.killed)}"),
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
