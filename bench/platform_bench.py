"""Platform figures: download + store of 30 days x 12 symbols from the simulator, and the DAG's parse time."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

from openbell import calendar
from openbell.adapters.alpaca.broker import AlpacaBroker
from openbell.adapters.alpaca.data import AlpacaMarketData
from openbell.marketdata import download
from openbell.params import DEFAULT_UNIVERSE
from openbell.pg.databases import scratch_database
from openbell.pg.throwaway import ephemeral_server
from openbell.sim.testing import SimProcess
from openbell.store.db import make_engine, upgrade

ROOT = Path(__file__).resolve().parents[1]
SESSION = date(2025, 11, 20)


def _download_figures() -> list[tuple[str, float, str]]:
    session = calendar.session(SESSION)
    assert session is not None
    with tempfile.TemporaryDirectory() as tmp, ephemeral_server(Path(tmp)) as server, \
            scratch_database(server) as url, SimProcess(date=SESSION.isoformat(), speed=1, start="17:00") as sim:
        upgrade(url)
        engine = make_engine(url)
        rows: list[tuple[str, float, str]] = []
        for label in ("first run", "rerun (upsert, nothing changes)"):
            t0 = time.perf_counter()
            config = sim.config()
            summary = download(AlpacaMarketData(config), AlpacaBroker(config), engine, session, session.close,
                               DEFAULT_UNIVERSE, days=30)
            elapsed = time.perf_counter() - t0
            bars = summary["upsert"]["received"]
            rows.append((f"download+store 30d x 12 symbols, {label} ({bars} bars)", elapsed, "s"))
        engine.dispose()
        return rows


def _parse_time() -> tuple[str, float, str]:
    code = (
        "import time; from airflow.dag_processing.dagbag import DagBag; t=time.perf_counter(); "
        f"b=DagBag({str(ROOT / 'dags')!r}); assert not b.import_errors, b.import_errors; "
        "print(time.perf_counter()-t)"
    )
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "AIRFLOW_HOME": home, "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
               "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins")}
        samples = []
        for _ in range(3):
            out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
            samples.append(float(out.stdout.strip().splitlines()[-1]))
    return ("DAG file parse (DagBag fill, best of 3; imports included)", min(samples), "s")


def run() -> list[tuple[str, float, str]]:
    """Measure and print the platform figures."""
    rows = [*_download_figures(), _parse_time()]
    for name, value, unit in rows:
        print(f"{name}: {value:.3f} {unit}")
    return rows


if __name__ == "__main__":
    run()
