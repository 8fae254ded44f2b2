"""``openbell demo``'s options: a start outside the session, or a strategy or parameters a run would refuse,
is refused with one line before anything is started."""

from __future__ import annotations

import json
from datetime import date

import pytest

from dates import HALF_DAY as HALF
from dates import SESSION as FULL
from openbell.params import RUN_DEFAULTS_ENV
from openbell.runtime import demo
from openbell.runtime.demo import start_error


@pytest.mark.parametrize(("day", "start"), [(FULL, "09:25"), (FULL, "04:00"), (FULL, "15:59"), (HALF, "12:50")])
def test_a_start_inside_the_day_is_taken(day: date, start: str) -> None:
    assert start_error(day, start) is None


@pytest.mark.parametrize(
    ("day", "start", "reason"),
    [
        (FULL, "16:00", "at or after the close of 2025-11-20 (16:00 ET)"),
        (FULL, "23:10", "at or after the close"),
        (HALF, "13:00", "at or after the close of 2025-11-28 (13:00 ET)"),
        (FULL, "03:59", "before 04:00 ET"),
        (FULL, "9:30", "HH:MM"),
        (FULL, "09:30:15", "HH:MM"),
        (FULL, "25:00", "expected a time"),
        (FULL, "noon", "HH:MM"),
    ],
)
def test_a_start_outside_the_session_is_refused(day: date, start: str, reason: str) -> None:
    message = start_error(day, start)
    assert message is not None and reason in message and "\n" not in message


def test_the_cli_refuses_before_starting_anything(monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    def never(*_: object, **__: object) -> None:
        raise AssertionError("nothing may start")

    monkeypatch.setattr(demo, "rehearse", never)
    assert demo.main(["--date", "2025-11-28", "--start", "13:30"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("openbell demo: --start 13:30 is at or after the close")


def test_the_cli_passes_the_start_to_the_rehearsal(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, object] = {}

    class _Stop(Exception):
        pass

    def rehearse(session_date: date, **kw: object) -> None:
        seen.update(kw, date=session_date)
        raise _Stop

    monkeypatch.setattr(demo, "rehearse", rehearse)
    monkeypatch.setattr(demo.signal, "signal", lambda *_: None)
    with pytest.raises(_Stop):
        demo.main(["--date", "2025-11-20", "--start", "15:40", "--speed", "30"])
    assert (seen["date"], seen["start"], seen["speed"]) == (FULL, "15:40", 30.0)


def test_the_strategy_options_become_the_runs_defaults_over_the_deployments() -> None:
    assert demo.strategy_defaults(None, None) == ""
    env = {RUN_DEFAULTS_ENV: '{"daily_loss_limit": 0.02, "strategy_params": {"lookback": 20}}'}
    raw = demo.strategy_defaults("momentum_rotation", '{"lookback": 10}', env)
    assert json.loads(raw) == {"daily_loss_limit": 0.02, "strategy": "momentum_rotation",
                               "strategy_params": {"lookback": 10}}
    assert json.loads(demo.strategy_defaults("momentum_rotation", None, env))["strategy_params"] == {"lookback": 20}


@pytest.mark.parametrize(("strategy", "params", "says"), [
    ("nope", None, "unknown strategy 'nope'"),
    (None, "{lookback: 10}", "--strategy-params is not JSON"),
    (None, "[10]", "--strategy-params must be a JSON object"),
    ("momentum_rotation", '{"lookback": 1}', "lookback"),
    ("momentum_rotation", '{"bogus": 1}', "bogus"),
])
def test_a_strategy_the_run_would_refuse_is_refused_before_anything_starts(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], strategy: str | None,
        params: str | None, says: str) -> None:
    def never(*_: object, **__: object) -> None:
        raise AssertionError("nothing may start")

    monkeypatch.setattr(demo, "rehearse", never)
    monkeypatch.delenv(RUN_DEFAULTS_ENV, raising=False)
    argv = ["--date", "2025-11-20"] + (["--strategy", strategy] if strategy else []) + (
        ["--strategy-params", params] if params else [])
    assert demo.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("openbell demo: ") and says in err, err


def test_the_cli_passes_the_strategy_to_the_rehearsal(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, object] = {}

    class _Stop(Exception):
        pass

    def rehearse(session_date: date, **kw: object) -> None:
        seen.update(kw)
        raise _Stop

    monkeypatch.setattr(demo, "rehearse", rehearse)
    monkeypatch.setattr(demo.signal, "signal", lambda *_: None)
    monkeypatch.delenv(RUN_DEFAULTS_ENV, raising=False)
    with pytest.raises(_Stop):
        demo.main(["--date", "2025-11-20", "--strategy", "momentum_rotation", "--strategy-params", '{"top_k": 2}'])
    assert json.loads(str(seen["run_defaults"])) == {"strategy": "momentum_rotation", "strategy_params": {"top_k": 2}}


@pytest.mark.parametrize("count", ["0", "9", "-1"])
def test_a_number_of_accounts_out_of_range_is_refused_before_anything_starts(
        count: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import openbell.runtime.accounts_rehearsal as accounts

    def never(*_: object, **__: object) -> None:
        raise AssertionError("nothing may start")

    monkeypatch.setattr(accounts, "rehearse_accounts", never)
    monkeypatch.setattr(demo, "rehearse", never)
    assert demo.main(["--date", "2025-11-28", "--accounts", count]) == 2
    assert capsys.readouterr().err == f"openbell demo: --accounts must be from 1 to 8, got {count}\n"


def test_the_cli_rehearses_n_accounts_and_prints_a_section_each_and_a_summary(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import openbell.runtime.accounts_rehearsal as accounts
    from openbell.runtime.rehearsal import DayResult

    seen: dict[str, object] = {}

    def report(pnl: dict[str, float], flat: bool) -> dict[str, object]:
        return {"session": "2025-11-28", "steps": [], "orders": [{"status": "filled"}, {"status": "canceled"}],
                "fills": [], "pnl": pnl, "flat_at_close": flat, "positions": [], "risk": {}}

    def rehearse_accounts(session_date: date, names: list[str], **kw: object) -> dict[str, DayResult]:
        seen.update(kw, names=names, date=session_date)
        return {"acct1": DayResult("r1", "success", {}, report({"fills_cash_flow": 0.0, "change": 12.5}, True)),
                "acct2": DayResult("r2", "failed", {}, report({"fills_cash_flow": 0.0}, False))}

    monkeypatch.setattr(accounts, "rehearse_accounts", rehearse_accounts)
    monkeypatch.setattr(demo, "render", lambda r: f"report of {r['session']}")
    monkeypatch.setattr(demo, "redis_binary", lambda: "/usr/bin/redis-server")  # a machine without it too
    monkeypatch.setattr(demo.signal, "signal", lambda *_: None)
    assert demo.main(["--date", "2025-11-28", "--accounts", "2", "--executor", "celery", "--start", "12:00"]) == 1
    assert (seen["names"], seen["executor"], seen["start"]) == (["acct1", "acct2"], "celery", "12:00")
    out = capsys.readouterr().out
    assert "=== account acct1 (trading_day_acct1) ===" in out and "=== account acct2" in out
    table = out.strip().splitlines()[-3:]
    assert table[0].split() == ["account", "run", "P&L", "orders", "filled", "flat", "result"]
    assert table[1].split() == ["acct1", "success", "+12.50", "2", "1", "yes", "OK"]
    assert table[2].split() == ["acct2", "failed", "n/a", "2", "1", "NO", "NOT", "OK"]
