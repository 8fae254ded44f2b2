"""An order worker's import set: what it loads to rebuild the broker port and send, and what it must not load
(the live loop's modules, pandas, numpy, SQLAlchemy). Each check runs in a fresh interpreter, as a worker does."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import openbell
from openbell.adapters.alpaca.broker import AlpacaBroker
from openbell.adapters.alpaca.config import AlpacaConfig

HEAVY = ("pandas.core", "numpy", "sqlalchemy", "openbell.trading.live", "openbell.strategy", "openbell.store")

# What a worker does before its first order, and the order's request built as submit() builds it.
WORKER = """
import pickle, sys
from openbell.trading.sender import main
broker = pickle.loads(sys.stdin.buffer.read())
channel = broker.order_channel()
from openbell.adapters.alpaca.broker import _request
for limit, notional in ((None, None), (101.5, None), (None, 250.0)):
    _request("ob-20251120-000001-SPY", "SPY", 2.0, "buy", limit, notional).to_request_fields()
print(" ".join(sorted(sys.modules)))
"""


def _run(code: str, stdin: bytes = b"") -> str:
    root = str(Path(openbell.__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
    done = subprocess.run([sys.executable, "-c", code], input=stdin, capture_output=True, env=env, timeout=60,
                          check=True)
    return done.stdout.decode()


def test_an_order_worker_loads_neither_the_live_loop_nor_pandas_numpy_or_sqlalchemy() -> None:
    config = AlpacaConfig.for_simulator("http://127.0.0.1:9", "key", "secret",
                                        budget_url="postgresql+psycopg2://u:p@127.0.0.1:9/state")
    loaded = set(_run(WORKER, pickle.dumps(AlpacaBroker(config))).split())
    assert "openbell.adapters.alpaca.broker" in loaded and "openbell.adapters.alpaca.pg_budget" in loaded
    assert not {m for m in loaded for heavy in HEAVY if m == heavy or m.startswith(heavy + ".")}


def test_pandas_deferred_in_a_worker_loads_at_its_first_use() -> None:
    code = """
import sys
from openbell.adapters.alpaca.rebuild import defer
defer("pandas")
import pandas as pd
assert "pandas.core" not in sys.modules and repr(pd) == "<deferred module 'pandas'>"
assert pd.Timestamp("2025-11-20").year == 2025 and "pandas.core" in sys.modules
import pandas
assert type(pandas).__name__ == "module" and pandas.DataFrame is pd.DataFrame
"""
    _run(code)
