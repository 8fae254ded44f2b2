"""How many accounts one machine holds: N accounts' days at once on one Airflow (LocalExecutor), N = 1, 2, 4.

Run: ``.venv/bin/python -m bench accounts_bench``. Each N is a rehearsal of the half day 2025-11-28 from 12:00 ET at
60x (``rehearse_accounts``: one simulator serving a key per account, a DAG and a state schema per account),
through the liquidation. Per account it prints the decision lateness p99 of its live trading (market seconds
after a minute ends until it is decided), the CPU its trading process and order workers used while trading (% of
one core), and their memory (the largest sum seen, sampled every second): resident (RSS, each process counted
whole) and proportional (PSS: each page shared with other processes split among them, such as the code of the
libraries every process loads and the pages the trading process still shares with the Airflow task supervisor it
was forked from, whose own memory is not counted). The trading process is the one the step ledger names for the
account's running ``live_trading``; its order workers are its children.
"""

from __future__ import annotations

import tempfile
import threading
from datetime import date
from pathlib import Path
from typing import Any

import psutil
from sqlalchemy import text

from openbell.runtime.accounts_rehearsal import rehearse_accounts
from openbell.runtime.rehearsal import Rehearsal

DAY = date(2025, 11, 28)
COUNTS = (1, 2, 4)
MIB = 1024 * 1024


class Sampler:
    """Every second: each account's trading process tree, its resident and proportional memory and CPU time."""

    def __init__(self, days: dict[str, Rehearsal]) -> None:
        self.days = days
        self.peak_rss = dict.fromkeys(days, 0)
        self.peak_pss = dict.fromkeys(days, 0)
        self.cpu: dict[str, dict[int, float]] = {n: {} for n in days}  # pid -> CPU seconds last seen
        self.trading_seconds = dict.fromkeys(days, 0.0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _pid(self, day: Rehearsal) -> int | None:
        with day.engine.connect() as conn:
            return conn.execute(text("SELECT (summary->'process'->>'pid')::int FROM step_runs WHERE step = "
                                     "'live_trading' AND status = 'running' ORDER BY id DESC LIMIT 1")).scalar()

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            for name, day in self.days.items():
                try:
                    pid = self._pid(day)
                    if pid is None:
                        continue
                    root = psutil.Process(pid)
                    tree = [root, *root.children(recursive=True)]
                    rss = pss = 0
                    for proc in tree:
                        with proc.oneshot():
                            memory = proc.memory_full_info()
                            rss, pss = rss + memory.rss, pss + memory.pss
                            times = proc.cpu_times()
                            self.cpu[name][proc.pid] = times.user + times.system
                    self.peak_rss[name] = max(self.peak_rss[name], rss)
                    self.peak_pss[name] = max(self.peak_pss[name], pss)
                    self.trading_seconds[name] += 1.0
                except (psutil.Error, Exception):  # a process gone between listing and reading: next second
                    continue


def _one(count: int, tmp: Path) -> dict[str, dict[str, Any]]:
    names = [f"acct{i}" for i in range(1, count + 1)]
    sampler: list[Sampler] = []

    def running(days: dict[str, Rehearsal]) -> None:
        sampler.append(Sampler(days))
        sampler[0].start()

    def finished(_days: dict[str, Rehearsal]) -> None:
        sampler[0].stop()

    results = rehearse_accounts(DAY, names, home=tmp / f"n{count}", speed=60, start="12:00", progress=lambda _: None,
                                on_running=running, on_finished=finished, timeout=900)
    out: dict[str, dict[str, Any]] = {}
    for name, result in results.items():
        trading = next((s for s in result.report["steps"] if s["step"] == "live_trading"), {})
        s = sampler[0]
        seconds = s.trading_seconds[name] or float("nan")
        out[name] = {"ok": result.ok, "lateness_p99_s": (trading.get("summary") or {}).get("lateness_p99_s"),
                     "cpu_percent": 100.0 * sum(s.cpu[name].values()) / seconds,
                     "rss_mib": s.peak_rss[name] / MIB, "pss_mib": s.peak_pss[name] / MIB}
    return out


def run() -> list[tuple[str, float, str]]:
    """Measure and print (name, value, unit) rows."""
    nan = float("nan")
    rows: list[tuple[str, float, str]] = []
    for count in COUNTS:
        with tempfile.TemporaryDirectory(prefix="ob-accounts-bench-") as tmp:
            per = _one(count, Path(tmp))
        worst = max((v["lateness_p99_s"] for v in per.values() if v["lateness_p99_s"] is not None), default=nan)
        rows += [
            (f"{count} account(s): days ok", float(sum(v["ok"] for v in per.values())), f"of {count}"),
            (f"{count} account(s): decision lateness p99, worst account", worst, "market s"),
            (f"{count} account(s): CPU per account (trading + order workers)",
             sum(v["cpu_percent"] for v in per.values()) / count, "% of a core"),
            (f"{count} account(s): resident memory per account (trading + order workers)",
             sum(v["rss_mib"] for v in per.values()) / count, "MiB"),
            (f"{count} account(s): proportional memory per account (trading + order workers)",
             sum(v["pss_mib"] for v in per.values()) / count, "MiB"),
        ]
    for name, value, unit in rows:
        print(f"{name:<72} {value:>10.3f} {unit}")
    return rows


if __name__ == "__main__":
    run()
