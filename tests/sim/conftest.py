"""Fixtures for the simulator's tests: live simulator subprocesses on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sim_helpers import within_rate_limit

from openbell.sim.testing import SimProcess


@pytest.fixture(scope="module")
def open_sim() -> Iterator[SimProcess]:
    """A simulator whose market is open for the whole module (starts 09:31 ET at 60x), on the dense market
    without corrections: these tests compare bars and pages with the synthetic market itself (the sparse,
    corrected default has its own tests)."""
    with SimProcess(date="2025-11-20", speed=60, start="09:31",
                    extra_args=["--dense", "--corrections", "0", "--seed-position", "AAPL:100",
                                "--slippage-bps", "5"]) as sim:
        yield sim
        within_rate_limit(sim)


@pytest.fixture(scope="module")
def closed_sim() -> Iterator[SimProcess]:
    """A simulator before the open (08:00 ET at 1x): orders are accepted and queued."""
    with SimProcess(date="2025-11-20", speed=1, start="08:00") as sim:
        yield sim
        within_rate_limit(sim)
