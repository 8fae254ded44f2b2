"""``make bench``: run every benchmark module's ``run()`` and print the figures (never pass/fail)."""

from __future__ import annotations

import importlib
import sys
import traceback

MODULES = ["sim_bench", "store_bench", "optimize_bench", "session_bench", "health_bench", "platform_bench",
           "morning_bench", "fault_bench", "ui_bench", "backtest_bench", "accounts_bench", "worker_kill_bench"]


def main(argv: list[str]) -> int:
    wanted = argv or MODULES
    rows: list[tuple[str, str, float, str]] = []
    for name in wanted:
        try:
            module = importlib.import_module(f"bench.{name}")
        except ModuleNotFoundError:
            continue
        print(f"== {name}", flush=True)
        try:
            for figure, value, unit in module.run():
                rows.append((name, figure, value, unit))
        except Exception:
            traceback.print_exc()
            rows.append((name, "FAILED TO RUN", float("nan"), ""))
    print("\nbenchmark figures")
    for name, figure, value, unit in rows:
        print(f"  {name:<15} {figure:<60} {value:>14,.3f} {unit}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
