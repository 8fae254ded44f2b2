"""``openbell sim`` flags, and REST faults seen through the real TradingClient."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from alpaca.common.exceptions import APIError

from openbell.sim.cli import main, parser
from openbell.sim.testing import SimProcess

FLAGS = ["--date", "--speed", "--start", "--host", "--port", "--data-dir", "--api-key", "--secret-key", "--seed",
         "--slippage-bps", "--seed-position", "--cash", "--csv-dir", "--max-stream-connections",
         "--drop-streams-at", "--silence-at", "--refuse-reconnect-seconds", "--rest-error-rate", "--rest-delay-ms",
         "--background", "--sparse", "--dense", "--corrections", "--halt", "--split", "--rate-limit",
         "--trading-blocked", "--not-tradable", "--not-fractionable", "--not-shortable", "--hard-to-borrow",
         "--account"]


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


BAD_VALUES: dict[str, list[str]] = {
    "--date": ["2025-11-27", "2025-13-01", "nan", "1900-01-03"],
    "--speed": ["nan", "inf", "-inf", "-1", "0", "abc", "1e9"],
    "--start": ["nan", "24:00", "9h", "-1:00"],
    "--host": ["", "a b", "http://127.0.0.1", "../x"],
    "--port": ["0", "-1", "65536", "nan", "inf", "80.5"],
    "--data-dir": ["", "{file}"],
    "--api-key": ["", "a b", "x\ny"],
    "--secret-key": ["", "x\ny"],
    "--max-stream-connections": ["0", "-1", "nan", "1.5"],
    "--seed": ["-1", "nan", "1.5", str(2**32)],
    "--csv-dir": ["{missing}", "{file}", "{empty}", "{badname}"],
    "--symbol": ["../../x", "", "TOOLONGSYMBOL", "A B", ".A", "A..B", "\u00c4PPL"],
    "--cash": ["nan", "inf", "-inf", "-1"],
    "--slippage-bps": ["nan", "inf", "-1", "10001"],
    "--seed-position": ["AAPL", "AAPL:nan", "AAPL:inf", "AAPL:-inf", "AAPL:0", "../../x:10", ":10"],
    "--drop-streams-at": ["25:00", "nan", "9"],
    "--silence-at": ["10:00", "10:00:0", "10:00:nan", "10:00:-5", "99:00:5"],
    "--refuse-reconnect-seconds": ["nan", "inf", "-1"],
    "--rest-error-rate": ["nan", "inf", "-0.1", "2"],
    "--rest-delay-ms": ["nan", "inf", "-1"],
    "--reject-symbol": ["../../x", "", "TOOLONGSYMBOL"],
    "--log-level": ["LOUD", "nan"],
    "--corrections": ["nan", "inf", "-0.1", "1.5", "x"],
    "--halt": ["SPY", "SPY:10:00", "SPY:11:00-10:00", "SPY:10:00-10:00", "SPY:25:00-26:00", "../x:10:00-11:00",
               "SPY:10:00-noon", "SPY:10:00:30-11:00", "SPY:08:00-09:00", "SPY:15:00-17:00"],
    "--split": ["SPY", "SPY:0.1", "SPY:0:2025-11-20", "SPY:-0.1:2025-11-20", "SPY:nan:2025-11-20",
                "SPY:inf:2025-11-20", "SPY:1:2025-11-20", "SPY:0.1:2025-11-27", "SPY:0.1:2025-13-01",
                "../x:0.1:2025-11-20"],
    "--rate-limit": ["0", "-1", "nan", "1.5", "abc", "inf"],
    "--not-tradable": ["../../x", "", "TOOLONGSYMBOL"],
    "--not-fractionable": ["../../x", "", "TOOLONGSYMBOL"],
    "--not-shortable": ["../../x", "", "TOOLONGSYMBOL"],
    "--hard-to-borrow": ["../../x", "", "TOOLONGSYMBOL"],
    "--account": ["", "a", "a:key", "a:key:", "a::s3cret", ":key:s3cret", "../x:key:s3cret", "a b:key:s3cret",
                  "a:k y:s3cret", "a:key:s3 cret", "a:key:s3cr\u00e9t", "-a:key:s3cret", "a" * 65 + ":key:s3cret"],
}
SWITCHES = ["--reset-clock", "--partial-fills", "--no-sip", "--background", "--sparse", "--dense", "--trading-blocked"]


def test_every_flag_has_bad_values_listed() -> None:
    flags = {a.option_strings[-1] for a in parser()._actions if a.option_strings} - {"--help"}
    assert flags == set(BAD_VALUES) | set(SWITCHES)


@pytest.mark.parametrize(
    "args",
    [[flag, value] for flag, values in BAD_VALUES.items() for value in values] + [[f"{s}=yes"] for s in SWITCHES],
    ids=lambda a: repr(" ".join(a)),
)
def test_each_flag_refuses_bad_values_in_one_line(
    args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    async def accepted(*_: object) -> None:
        raise AssertionError(f"{args} was accepted")

    monkeypatch.setattr("openbell.sim.cli.serve", accepted)
    (tmp_path / "file").write_text("x")
    (tmp_path / "empty").mkdir()
    (tmp_path / "badname").mkdir()
    (tmp_path / "badname" / "a b.csv").write_text("timestamp,open,high,low,close,volume\n")
    args = [a.format(file=tmp_path / "file", missing=tmp_path / "missing", empty=tmp_path / "empty",
                     badname=tmp_path / "badname") for a in args]
    with pytest.raises(SystemExit) as exc:
        main([*args, "--data-dir", str(tmp_path / "sim")] if args[0] != "--data-dir" else args)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if not line.startswith(("usage:", " "))]
    assert len(lines) == 1 and lines[0].startswith("openbell sim: error: "), err


@pytest.mark.parametrize(
    "args",
    [["--sparse", "--dense"], ["--halt", "SPY:10:00-10:30", "--halt", "SPY:10:15-close"],
     ["--split", "SPY:0.5:2025-11-18", "--split", "SPY:2:2025-11-18"],
     ["--account", "a:key1:s3cret", "--account", "a:key2:s3cret"],
     ["--account", "a:key1:s3cret", "--account", "b:key1:s3cret"],
     ["--account", "a:key1:s3cret", "--api-key", "key2"], ["--secret-key", "s3cret", "--account", "a:key1:s3cret"]],
    ids=lambda a: repr(" ".join(a)),
)
def test_flags_that_contradict_each_other_are_refused_in_one_line(
    args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    async def accepted(*_: object) -> None:
        raise AssertionError(f"{args} was accepted")

    monkeypatch.setattr("openbell.sim.cli.serve", accepted)
    with pytest.raises(SystemExit) as exc:
        main([*args, "--date", "2025-11-20", "--data-dir", str(tmp_path / "sim")])
    assert exc.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if not line.startswith(("usage:", " "))]
    assert len(lines) == 1 and lines[0].startswith("openbell sim: error: "), lines
    if "--account" in args:
        assert lines[0].startswith("openbell sim: error: argument --account: ") and "s3cret" not in lines[0], lines


def test_a_bad_account_never_shows_its_secret(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for value in BAD_VALUES["--account"]:
        with pytest.raises(SystemExit):
            main([f"--account={value}", "--data-dir", str(tmp_path / "sim")])
        err = capsys.readouterr().err
        assert "argument --account: expected NAME:KEY:SECRET" in err and "s3cr" not in err, (value, err)


def test_a_bad_flag_from_the_command_line_is_one_line_without_traceback() -> None:
    out = subprocess.run([sys.executable, "-m", "openbell.sim", "--speed", "nan"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 2
    assert out.stderr.splitlines()[-1].startswith("openbell sim: error: argument --speed")
    assert "Traceback" not in out.stderr


def test_rest_faults_reach_the_client_and_are_counted() -> None:
    with SimProcess(speed=60, start="09:31", extra_args=["--rest-error-rate", "1", "--rest-delay-ms", "200"]) as sim:
        tc = sim.config().trading_client()
        with pytest.raises(APIError) as exc:
            tc.get_account()
        assert exc.value.status_code in (429, 500) and exc.value.code in (42910000, 50010000)
        counters = sim.faults()["counters"]  # one per attempt: the client retries 429 and 5xx on GETs
        injected = counters["rest_429"] + counters["rest_500"]
        assert injected >= 1 and counters["rest_delayed"] == injected
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
