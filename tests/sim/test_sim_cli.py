"""``openbell sim`` flags, and REST faults seen through the real TradingClient."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from alpaca.common.exceptions import APIError

from openbell.sim.cli import parser
from openbell.sim.testing import SimProcess

FLAGS = ["--date", "--speed", "--start", "--host", "--port", "--data-dir", "--api-key", "--secret-key", "--seed",
         "--slippage-bps", "--seed-position", "--cash", "--csv-dir", "--max-stream-connections",
         "--drop-streams-at", "--silence-at", "--refuse-reconnect-seconds", "--rest-error-rate", "--rest-delay-ms",
         "--background"]


def test_help_documents_every_flag() -> None:
    out = subprocess.run([sys.executable, "-m", "openbell.cli", "sim", "--help"], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    for flag in FLAGS:
        assert flag in out, flag
    documented = {a.option_strings[-1] for a in parser()._actions if a.option_strings}
    for action in parser()._actions:
        assert action.help, action.option_strings
    assert set(FLAGS) <= documented


@pytest.mark.parametrize(
    "args",
    [["--date", "2025-11-27"], ["--date", "2025-13-01"], ["--speed", "0"], ["--start", "9h"],
     ["--seed-position", "AAPL"], ["--silence-at", "10:00"], ["--rest-error-rate", "2"]],
)
def test_bad_flags_are_refused(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        parser().parse_args(args)
    assert exc.value.code == 2
    assert "error" in capsys.readouterr().err


def test_rest_faults_reach_the_client_and_are_counted() -> None:
    with SimProcess(speed=60, start="09:31", extra_args=["--rest-error-rate", "1", "--rest-delay-ms", "200"]) as sim:
        tc = sim.config().trading_client()
        with pytest.raises(APIError) as exc:
            tc.get_account()
        assert exc.value.status_code in (429, 500) and exc.value.code in (42910000, 50010000)
        counters = sim.faults()["counters"]
        assert counters["rest_429"] + counters["rest_500"] == 1 and counters["rest_delayed"] == 1
        sim.set_faults(rest_error_rate=0, rest_delay_ms=0)
        assert tc.get_account().status == "ACTIVE"
        assert sim.clock()["speed"] == 60  # /sim/* is never faulted


@pytest.mark.skipif(not hasattr(os, "SCHED_BATCH"), reason="no SCHED_BATCH on this platform")
def test_background_runs_every_simulator_thread_on_batch_scheduling() -> None:
    with SimProcess(speed=60, start="09:31", extra_args=["--background"]) as sim:
        assert sim.config().trading_client().get_clock().is_open  # it serves as usual
        assert sim.proc is not None
        tids = [int(t) for t in os.listdir(f"/proc/{sim.proc.pid}/task")]
        assert {os.sched_getscheduler(tid) for tid in tids} == {os.SCHED_BATCH}
    with SimProcess(speed=60, start="09:31") as sim:  # without the flag: the usual policy
        assert sim.proc is not None
        assert os.sched_getscheduler(sim.proc.pid) == os.SCHED_OTHER
