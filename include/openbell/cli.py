"""The ``openbell`` command: each subcommand lives in the module that owns the capability."""

from __future__ import annotations

import importlib
import sys

COMMANDS: dict[str, tuple[str, str]] = {
    "sim": ("openbell.sim.cli", "run the Alpaca-compatible market and broker simulator"),
    "db": ("openbell.runtime.db_cli", "manage openbell's state database (upgrade, url)"),
    "demo": ("openbell.runtime.demo", "run one simulated trading day through Airflow and report it"),
    "airflow": ("openbell.runtime.airflow_cli", "run Airflow's processes for openbell (live or paper)"),
    "report": ("openbell.runtime.report_cli", "print a session's report from Postgres (--html: its page)"),
    "backtest": ("openbell.runtime.backtest_cli", "backtest a strategy over stored or simulated sessions"),
    "drill": ("openbell.runtime.drill_stage", "run fault drills (killed tasks, dropped streams...) on simulated days"),
    "strategy": ("openbell.strategy.scaffold", "write a new strategy and its test (strategy new NAME)"),
}


def main(argv: list[str] | None = None) -> int:
    """Dispatch ``openbell <command> [args]`` to ``<module>.main(args)``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print("usage: openbell <command> [options]\n\ncommands:")
        for name, (_, text) in COMMANDS.items():
            print(f"  {name:<10} {text}")
        print("\n'openbell <command> --help' describes a command's options.")
        return 0 if args else 2
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(f"openbell: unknown command {name!r}; see 'openbell --help'", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
