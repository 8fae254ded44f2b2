"""``openbell airflow``: Airflow's processes for every trading day, against Alpaca (paper by default).

The same scheduler, dag-processor, triggerer and api-server as the demo, but with no end date: the
NYSE timetable creates a run before each session's open. Credentials come from the environment
(``APCA_API_KEY_ID``/``APCA_API_SECRET_KEY``) into the ``alpaca_default`` Airflow connection.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import replace

from openbell.adapters.alpaca.config import AlpacaConfig
from openbell.dberrors import redact
from openbell.paths import home_dir
from openbell.pg.urls import resolve_urls
from openbell.runtime.airflow import AirflowStack
from openbell.store.db import upgrade


def main(argv: list[str] | None = None) -> int:
    """Start the processes and keep them running until interrupted."""
    parser = argparse.ArgumentParser(prog="openbell airflow", description=__doc__.split("\n\n")[0])
    parser.add_argument("--live", action="store_true", help="trade the live account (default: paper)")
    parser.add_argument("--port", type=int, default=8080, help="api-server port on 127.0.0.1 (default 8080)")
    parser.add_argument("--feed", choices=["iex", "sip"], default=os.environ.get("OPENBELL_FEED", "iex"))
    args = parser.parse_args(argv)
    config = replace(AlpacaConfig.from_env(), feed=args.feed)
    if not config.simulated:
        config = replace(config, paper=not args.live)
    home = home_dir()
    state_url, airflow_url = resolve_urls(home)
    upgrade(state_url)
    stack = AirflowStack(home / "airflow", airflow_url, state_url, config, api_port=args.port)
    stack.migrate()
    stack.start()
    try:
        stack.wait_ready()
        mode = "simulator" if config.simulated else ("LIVE" if args.live else "paper")
        print(f"openbell on Airflow at {stack.api_url} (login admin / see {stack.home / 'passwords.json'})")
        print(f"account: {mode}; state database {redact(state_url)}; Ctrl-C to stop")
        while True:
            stack.check_alive()
            time.sleep(5)
    except KeyboardInterrupt:
        return 0
    finally:
        stack.stop(grace=120)
