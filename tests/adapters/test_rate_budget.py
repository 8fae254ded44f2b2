"""The Trading API request budget (openbell.adapters.alpaca.budget) and 429 handling (retry, transport):
the budget's logic on a fake clock, then against the real simulator's request limit: a burst from several
processes above the limit stays free of 429s, and a 429 is waited out as its headers say."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import pickle
import stat
import subprocess
import sys
import textwrap
import time
from email.utils import formatdate
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import requests
from alpaca.common.exceptions import APIError
from alpaca.trading.requests import GetOrdersRequest

from openbell.adapters.alpaca import budget as ob_budget
from openbell.adapters.alpaca import retry as ob_retry
from openbell.adapters.alpaca.broker import AlpacaBroker
from openbell.adapters.alpaca.budget import (
    ORDER,
    READ,
    MarketMinute,
    RequestBudget,
    UnsafeBudgetState,
    check_private,
    open_state,
    state_path,
)
from openbell.adapters.alpaca.config import AlpacaConfig
from openbell.adapters.alpaca.retry import RateLimitRetry, rate_limited_backoff, wait_after_429
from openbell.adapters.alpaca.transport import OrderSession, order_client
from openbell.sim.testing import SimProcess

# -- the budget's logic, on a fake clock ------------------------------------------------------------------


class FakeTime:
    """A clock that only moves when slept on."""

    def __init__(self, start: float = 1_000_000.0) -> None:
        self.t = start
        self.slept: list[float] = []

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.t += seconds


def budget(path: Path, clock: FakeTime, limit: int = 100, window: float | None = 60.0) -> RequestBudget:
    return RequestBudget(limit, path, window=lambda: window, now=clock.now, sleep=clock.sleep)


def test_reads_stop_at_their_share_and_orders_may_use_the_rest(tmp_path: Path) -> None:
    clock = FakeTime()
    b = budget(tmp_path / "b", clock)
    assert (b.ceiling(READ), b.ceiling(ORDER)) == (80, 95)
    default = RequestBudget(200, tmp_path / "x")
    assert (default.ceiling(READ), default.ceiling(ORDER)) == (160, 190)
    assert [b.try_acquire(READ) for _ in range(80)] == [0.0] * 80
    assert b.try_acquire(READ) > 0  # the reads' share is spent...
    assert [b.try_acquire(ORDER) for _ in range(15)] == [0.0] * 15  # ...and orders still go at once
    assert b.try_acquire(ORDER) == pytest.approx(b.span())  # until the first request leaves the window
    assert clock.slept == []


def test_a_full_window_is_waited_out_until_its_oldest_request_leaves(tmp_path: Path) -> None:
    clock = FakeTime()
    b = budget(tmp_path / "b", clock, limit=10)
    for _ in range(8):
        b.acquire(READ)
        clock.t += 1.0
    span = b.span()
    assert span is not None and span > 60.0  # padded against latency jitter
    waited = b.acquire(READ)  # the 9th read: 8 is the reads' ceiling of 10
    assert waited == pytest.approx(span - 8.0) and clock.slept == [pytest.approx(span - 8.0)]


def test_processes_share_the_budget_through_its_file(tmp_path: Path) -> None:
    clock = FakeTime()
    one, two = budget(tmp_path / "b", clock, limit=10), budget(tmp_path / "b", clock, limit=10)
    for _ in range(4):
        assert one.try_acquire(READ) == 0.0 and two.try_acquire(READ) == 0.0
    assert one.try_acquire(READ) > 0 and two.try_acquire(READ) > 0


def test_a_block_after_a_429_holds_every_priority_for_at_most_one_window(tmp_path: Path) -> None:
    clock = FakeTime()
    b, other = budget(tmp_path / "b", clock, window=1.0), budget(tmp_path / "b", clock, window=1.0)
    b.block(0.5)
    assert other.try_acquire(ORDER) == pytest.approx(0.5)
    assert other.acquire(READ) == pytest.approx(0.5)
    b.block(30.0)  # a reset further away than a window cannot be right
    assert b.try_acquire(ORDER) == pytest.approx(b.wait_cap()) and b.wait_cap() < 1.1


def test_an_unknown_window_or_an_unusable_file_holds_nothing_back(tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeTime()
    blind = budget(tmp_path / "b", clock, limit=1, window=None)
    assert [blind.try_acquire(READ) for _ in range(5)] == [0.0] * 5
    (tmp_path / "file").write_text("")
    broken = budget(tmp_path / "file" / "b", clock, limit=1)  # its directory is a file
    with caplog.at_level(logging.WARNING, logger="openbell.adapters.alpaca.budget"):
        assert [broken.try_acquire(READ) for _ in range(3)] == [0.0] * 3
    assert sum("unusable" in r.message for r in caplog.records) == 1


def test_a_damaged_file_starts_the_budget_afresh(tmp_path: Path) -> None:
    clock = FakeTime()
    (tmp_path / "b").write_bytes(b"not eight-byte floats")
    assert budget(tmp_path / "b", clock).try_acquire(READ) == 0.0


def test_the_window_is_one_market_minute() -> None:
    assert MarketMinute(None)() == 60.0
    assert MarketMinute("http://127.0.0.1:9/sim/clock", timeout=0.2)() is None  # no clock yet: nothing held back


# -- where the budget file lives, and who may plant what there --------------------------------------------


@pytest.fixture
def private(tmp_path: Path) -> Path:
    """A directory of this user that no one else may write (pytest's tmp_path may be 0700 or not)."""
    d = tmp_path / "private"
    d.mkdir(mode=0o700)
    d.chmod(0o700)
    return d


def test_the_budget_lives_in_a_private_directory_of_this_user_never_in_a_shared_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = tmp_path / "run-user"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    monkeypatch.setenv("OPENBELL_HOME", str(tmp_path / "home"))
    path = state_path("key-id", "http://127.0.0.1:9")
    assert path.parent == runtime / "openbell-ratelimit"
    assert path == state_path("key-id", "http://127.0.0.1:9") != state_path("key-id", "http://127.0.0.1:8")
    assert "key-id" not in str(path)  # the key id is hashed
    for unusable in ("", "relative/run", str(tmp_path / "missing")):  # no runtime directory: openbell's home
        monkeypatch.setenv("XDG_RUNTIME_DIR", unusable)
        assert state_path("key-id", "http://127.0.0.1:9").parent == (tmp_path / "home" / "ratelimit")
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    path = state_path("key-id", "http://127.0.0.1:9")
    assert path.parent == tmp_path / "home" / "ratelimit"
    assert RequestBudget(10, path).try_acquire(READ) == 0.0
    mode = path.parent.stat().st_mode
    assert stat.S_IMODE(mode) == 0o700 and path.parent.stat().st_uid == os.getuid()
    assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0


def test_a_planted_symlink_at_the_files_path_is_refused_and_its_target_untouched(
    private: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious bytes of another file")
    (private / "b").symlink_to(victim)
    with pytest.raises(UnsafeBudgetState, match="symbolic link"):
        open_state(private / "b")
    clock = FakeTime()
    planted = budget(private / "b", clock, limit=1)
    with caplog.at_level(logging.WARNING, logger="openbell.adapters.alpaca.budget"):
        assert [planted.try_acquire(READ) for _ in range(3)] == [0.0] * 3  # refused: nothing held back
        planted.block(5.0)
    assert victim.read_bytes() == b"precious bytes of another file"
    assert (private / "b").is_symlink()
    (refusal,) = [r for r in caplog.records if "refused" in r.getMessage()]
    assert refusal.levelno == logging.ERROR and "symbolic link" in refusal.getMessage()


def test_a_symlinked_directory_is_refused_and_nothing_is_created_where_it_points(private: Path,
                                                                                tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    (private / "dir").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(UnsafeBudgetState, match="symbolic link"):
        open_state(private / "dir" / "b")
    assert budget(private / "dir" / "b", FakeTime(), limit=1).try_acquire(READ) == 0.0
    assert list(elsewhere.iterdir()) == []


@pytest.mark.parametrize("mode", [0o770, 0o777, 0o730, 0o703, 0o1777], ids=oct)
def test_a_directory_others_may_write_is_refused(private: Path, mode: int) -> None:
    shared = private / "shared"
    shared.mkdir()
    shared.chmod(mode)
    with pytest.raises(UnsafeBudgetState, match=rf"writable by group or others \(mode {oct(mode)[2:]}\).*chmod 700"):
        open_state(shared / "b")
    assert budget(shared / "b", FakeTime(), limit=1).try_acquire(READ) == 0.0
    assert list(shared.iterdir()) == []  # no file was created in it


def test_a_directory_readable_but_not_writable_by_others_is_accepted(private: Path) -> None:
    readable = private / "readable"
    readable.mkdir()
    readable.chmod(0o755)
    with open_state(readable / "b") as state:
        state.write(b"x")
    assert (readable / "b").read_bytes() == b"x"


def test_a_directory_of_another_user_is_refused(private: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    me = os.getuid()
    mine = SimpleNamespace(st_mode=stat.S_IFDIR | 0o700, st_uid=me)
    check_private(mine, private, uid=me)  # type: ignore[arg-type]
    theirs = SimpleNamespace(st_mode=stat.S_IFDIR | 0o700, st_uid=me + 1)
    with pytest.raises(UnsafeBudgetState, match=rf"owned by uid {me + 1}, not this user \(uid {me}\)"):
        check_private(theirs, private, uid=me)  # type: ignore[arg-type]
    with pytest.raises(UnsafeBudgetState, match="not a directory"):
        check_private(SimpleNamespace(st_mode=stat.S_IFREG | 0o600, st_uid=me), private, uid=me)  # type: ignore[arg-type]
    monkeypatch.setattr(ob_budget.os, "getuid", lambda: me + 1)  # the real directory, seen by another user
    with pytest.raises(UnsafeBudgetState, match=rf"owned by uid {me}, not this user \(uid {me + 1}\)"):
        open_state(private / "b")
    assert not (private / "b").exists()


def test_a_budget_file_that_is_not_a_private_regular_file_is_refused(private: Path) -> None:
    os.mkfifo(private / "fifo")
    private.joinpath("fifo").chmod(0o600)
    (private / "loose").write_bytes(b"")
    (private / "loose").chmod(0o666)
    for name, says in (("loose", "writable by group or others"), ("fifo", "not a regular file")):
        with pytest.raises(UnsafeBudgetState, match=says):
            open_state(private / name)


def test_the_file_is_not_inherited_by_child_processes(private: Path) -> None:
    import fcntl

    with open_state(private / "b") as state:
        assert fcntl.fcntl(state.fileno(), fcntl.F_GETFD) & fcntl.FD_CLOEXEC
        assert not os.get_inheritable(state.fileno())


TAKE_CHILD = textwrap.dedent("""
    import sys
    from openbell.adapters.alpaca.budget import READ, RequestBudget, state_path
    budget = RequestBudget(10, state_path("key-id", "http://127.0.0.1:9"))
    print([budget.try_acquire(READ) for _ in range(int(sys.argv[1]))])
""")


def test_processes_of_one_user_share_the_budget_of_a_key_through_its_private_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setenv("OPENBELL_HOME", str(tmp_path / "home"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    got = subprocess.run([sys.executable, "-c", TAKE_CHILD, "5"], env=env, capture_output=True, text=True,
                         timeout=60)
    assert got.returncode == 0 and got.stdout.strip() == str([0.0] * 5), got.stderr
    mine = RequestBudget(10, state_path("key-id", "http://127.0.0.1:9"))
    assert [mine.try_acquire(READ) for _ in range(3)] == [0.0] * 3  # 8 reads of 10: the child's 5 count
    assert mine.try_acquire(READ) > 0


# -- what a 429 says --------------------------------------------------------------------------------------


def test_a_429_waits_for_retry_after_else_until_the_reset_of_a_spent_window() -> None:
    now = 1_700_000_000.0
    assert wait_after_429({"Retry-After": "3"}, now=now) == 3.0
    assert wait_after_429({"Retry-After": formatdate(now + 7, usegmt=True)}, now=now) == pytest.approx(7.0)
    spent = {"X-RateLimit-Limit": "200", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int(now) + 12)}
    assert wait_after_429(spent, now=now) == pytest.approx(12.0)
    assert wait_after_429(spent, cap=5.0, now=now) == 5.0
    assert wait_after_429({**spent, "X-RateLimit-Reset": str(int(now) - 5)}, now=now) == 0.0
    dated = {**spent, "Date": formatdate(now - 2, usegmt=True)}  # read against the server's clock
    assert wait_after_429(dated) == pytest.approx(14.0)
    assert wait_after_429({**spent, "X-RateLimit-Remaining": "17"}, now=now) is None  # not the limit
    assert wait_after_429({}, now=now) is None


def api_error_429(headers: dict[str, str]) -> APIError:
    response = SimpleNamespace(status_code=429, headers=requests.structures.CaseInsensitiveDict(headers))
    return APIError(json.dumps({"code": 42910000, "message": "rate limit exceeded"}),
                    SimpleNamespace(response=response, request=None))


def test_the_retry_policy_waits_at_least_as_long_as_a_429_asks() -> None:
    wait = rate_limited_backoff(0.05, 2.0)
    limited = api_error_429({"Retry-After": "9"})
    outcome = SimpleNamespace(exception=lambda: limited)
    assert wait(SimpleNamespace(attempt_number=1, outcome=outcome)) == 9.0  # type: ignore[arg-type]
    wrapped = RuntimeError("not placed")
    wrapped.__cause__ = limited  # as the idempotent submit raises it
    assert wait(SimpleNamespace(attempt_number=1, outcome=SimpleNamespace(exception=lambda: wrapped))) == 9.0  # type: ignore[arg-type]
    plain = SimpleNamespace(exception=lambda: requests.Timeout("slow"))
    assert wait(SimpleNamespace(attempt_number=1, outcome=plain)) < 0.06  # type: ignore[arg-type]


def test_retries_back_off_in_market_time_and_a_429_waits_as_long_as_it_asks(tmp_path: Path) -> None:
    rehearsal = budget(tmp_path / "b", FakeTime(), window=0.5)  # one market minute at 120x
    assert rehearsal.pace() == pytest.approx(1 / 120)
    assert budget(tmp_path / "c", FakeTime(), window=None).pace() == 1.0  # unknown: as live
    assert RequestBudget(200, tmp_path / "d").pace() == 1.0  # live
    wait = rate_limited_backoff(1.0, 8.0, pace=rehearsal.pace)
    timeout = SimpleNamespace(exception=lambda: requests.Timeout("slow"))
    assert 0.5 / 120 <= wait(SimpleNamespace(attempt_number=1, outcome=timeout)) < 1 / 120  # type: ignore[arg-type]
    limited = SimpleNamespace(exception=lambda: api_error_429({"Retry-After": "2"}))
    assert wait(SimpleNamespace(attempt_number=1, outcome=limited)) == 2.0  # type: ignore[arg-type]
    urllib3_policy = RateLimitRetry(total=5, backoff_factor=1.0).with_budget(rehearsal)
    for _ in range(3):
        urllib3_policy = urllib3_policy.increment(method="GET", url="/v2/positions",
                                                  error=requests.ConnectionError("reset"))
    unpaced = RateLimitRetry(total=5, backoff_factor=1.0)
    for _ in range(3):
        unpaced = unpaced.increment(method="GET", url="/v2/positions", error=requests.ConnectionError("reset"))
    assert unpaced.get_backoff_time() == 4.0
    assert urllib3_policy.get_backoff_time() == pytest.approx(4.0 / 120)


def test_the_get_retry_keeps_its_budget_and_blocks_it_on_a_429(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeTime()
    b = budget(tmp_path / "b", clock, window=1.0)
    policy = RateLimitRetry(total=3, status_forcelist={429}).with_budget(b)
    assert policy.new(total=2).budget is b
    monkeypatch.setattr(ob_retry.time, "time", clock.now)
    response = SimpleNamespace(status=429, headers={"X-RateLimit-Remaining": "0",
                                                    "X-RateLimit-Reset": str(int(clock.t) + 30)})
    policy.sleep(response)  # type: ignore[arg-type]
    assert clock.slept == [pytest.approx(b.wait_cap())]  # the reset, bounded by one window
    assert b.try_acquire(READ) == 0.0  # the retry was counted; the window is open again


def answer(status: int, **headers: str) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response.headers = requests.structures.CaseInsensitiveDict({k.replace("_", "-"): v for k, v in headers.items()})
    return response


def test_the_order_connection_sends_a_429_once_more_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeTime()
    monkeypatch.setattr("openbell.adapters.alpaca.transport.time.sleep", clock.sleep)
    monkeypatch.setattr("openbell.adapters.alpaca.retry.time.time", clock.now)
    session = OrderSession("http://127.0.0.1:9", 1.0, budget(tmp_path / "b", clock, window=1.0))
    spent = {"X_RateLimit_Remaining": "0", "X_RateLimit_Reset": str(int(clock.t) + 1)}
    answers = [answer(429, **spent), answer(429, **spent), answer(200)]
    got = session._limited("POST", "http://127.0.0.1:9/v2/orders", lambda: answers.pop(0))
    assert got.status_code == 429 and len(answers) == 1  # one resend; the caller asks the broker before more
    assert clock.slept == [pytest.approx(1.0)]  # the reset, waited through the shared budget
    fault = [answer(429, X_RateLimit_Remaining="150", X_RateLimit_Reset=str(int(clock.t) + 60)), answer(200)]
    assert session._limited("GET", "http://127.0.0.1:9/v2/orders", lambda: fault.pop(0)).status_code == 200
    assert clock.slept[-1] == pytest.approx(0.5) and session.budget.try_acquire(ORDER) == 0.0  # type: ignore[union-attr]


# -- the configuration ------------------------------------------------------------------------------------


def test_the_limit_is_configured_and_every_process_of_a_key_shares_one_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    config = AlpacaConfig.from_extra("key-id", "secret", {"simulator_url": "http://127.0.0.1:9", "rate_limit": 60})
    assert config.rate_limit == 60 and config.to_extra()["rate_limit"] == 60
    assert AlpacaConfig.from_extra("key-id", "secret", config.to_extra()) == config
    assert "rate_limit" not in AlpacaConfig.from_extra("key-id", "secret", {}).to_extra()
    monkeypatch.setenv("APCA_API_KEY_ID", "key-id")
    monkeypatch.setenv("APCA_API_SECRET_KEY", "secret")
    monkeypatch.setenv("OPENBELL_RATE_LIMIT", "90")
    assert AlpacaConfig.from_env().rate_limit == 90
    for bad in (-1, "many", 1.5, True):
        with pytest.raises(ValueError, match="rate_limit"):
            AlpacaConfig.from_extra("key-id", "secret", {"rate_limit": bad})
    mine, theirs = config.rate_budget(), pickle.loads(pickle.dumps(config)).rate_budget()
    assert mine is not None and theirs is not None and mine.path == theirs.path
    assert mine.path == state_path("key-id", "http://127.0.0.1:9") != state_path("other-key", "http://127.0.0.1:9")
    assert dataclasses.replace(config, rate_limit=0).rate_budget() is None
    assert config.trading_client()._session.budget is not None  # type: ignore[attr-defined]
    assert getattr(config.data_client()._session, "budget", None) is None  # market data has its own limit
    session = order_client(config)._session  # type: ignore[attr-defined]
    assert isinstance(session, OrderSession) and session.budget is not None


# -- against the simulator's request limit ----------------------------------------------------------------

LIMIT = 30
BURST_CHILD = textwrap.dedent("""
    import sys
    from openbell.adapters.alpaca.broker import AlpacaBroker
    from openbell.adapters.alpaca.config import AlpacaConfig
    url, key, secret, limit, tag = sys.argv[1:6]
    broker = AlpacaBroker(AlpacaConfig.for_simulator(url, key, secret, rate_limit=int(limit)), attempts=1)
    channel = broker.order_channel()
    for i in range(int(sys.argv[6])):
        broker.positions()
        assert channel.submit_market(f"burst-{tag}-{i}", "AAPL", 1, "buy").outcome == "submitted"
""")


def clear(config: AlpacaConfig) -> None:
    budget_ = config.rate_budget()
    if budget_ is not None:
        budget_.path.unlink(missing_ok=True)


def test_a_burst_from_several_processes_above_the_limit_meets_no_429() -> None:
    with SimProcess(speed=60, start="10:00", extra_args=["--rate-limit", str(LIMIT)]) as sim:
        config = dataclasses.replace(sim.config(), rate_limit=LIMIT)  # a market minute is 1 s of wall time
        clear(config)
        rounds = 20
        args = [sim.base_url, sim.key, sim.secret, str(LIMIT)]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        started = time.monotonic()
        children = [subprocess.Popen([sys.executable, "-c", BURST_CHILD, *args, str(n), str(rounds)], env=env)
                    for n in range(2)]
        client = config.trading_client()
        for _ in range(rounds * 2):
            client.get_orders(GetOrdersRequest(status="open"))
        assert [c.wait(timeout=120) for c in children] == [0, 0]
        elapsed = time.monotonic() - started
        counted = sim.health()["rate_limit"]
        clear(config)
    sent = 2 * rounds * 2 + rounds * 2  # two children (a position listing and a submit a round), the parent
    assert counted["limited"] == 0 and counted["peak"] <= LIMIT, counted
    assert counted["requests"] >= sent
    assert elapsed >= sent / LIMIT - 1.5  # held back to the limit, not sent at once


def test_a_429_from_the_simulator_is_waited_out_as_its_headers_say(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[dict[str, str], float | None]] = []
    real = ob_retry.wait_after_429

    def spy(headers: Any, cap: float = 60.0, now: float | None = None) -> float | None:
        wait = real(headers, cap, now)
        seen.append((dict(headers), wait))
        return wait

    monkeypatch.setattr(ob_retry, "wait_after_429", spy)
    with SimProcess(speed=30, start="10:00", extra_args=["--rate-limit", "3"]) as sim:  # a 2 s window
        config = dataclasses.replace(sim.config(), rate_limit=0)  # no budget: the sim's 429 is met
        client = config.trading_client()
        for _ in range(3):
            client.get_account()
        started = time.time()
        assert client.get_account().status is not None  # the 4th: 429, waited out, then answered
        elapsed = time.time() - started
        counted = sim.health()["rate_limit"]
    assert counted["limited"] == 1, counted
    (headers, wait), = seen
    reset = float(headers["X-RateLimit-Reset"])
    assert headers["X-RateLimit-Remaining"] == "0" and wait is not None
    assert started < reset <= started + 3.5  # the window's end, in wall seconds
    assert elapsed >= wait - 0.05 and wait >= reset - started - 1.5  # until the reset (Date is whole seconds)


def test_a_rate_limited_order_is_sent_once_more_after_the_reset_and_placed_once() -> None:
    with SimProcess(speed=30, start="10:00", extra_args=["--rate-limit", "2"]) as sim:  # a 2 s window
        config = dataclasses.replace(sim.config(), rate_limit=0)
        channel = AlpacaBroker(config).order_channel()
        channel.connect()
        channel.connect()  # the window is spent
        started = time.monotonic()
        result = channel.submit_market("ob-rate-1", "AAPL", 1, "buy")
        elapsed = time.monotonic() - started
        counted = sim.health()["rate_limit"]
        time.sleep(2.1)
        orders = config.trading_client().get_orders(GetOrdersRequest(status="all"))
    assert result.outcome == "submitted", result
    assert counted["limited"] == 1 and elapsed > 0.1, counted
    assert [o.client_order_id for o in orders] == ["ob-rate-1"]


def test_with_the_budget_a_429_holds_every_process_back_until_the_reset() -> None:
    with SimProcess(speed=30, start="10:00", extra_args=["--rate-limit", "3"]) as sim:  # a 2 s window
        config = dataclasses.replace(sim.config(), rate_limit=200)  # a budget larger than the broker's limit
        clear(config)
        one, two = config.trading_client(), config.trading_client()  # as two processes: one budget file
        for _ in range(3):
            one.get_account()
        one.get_account()  # 429: the budget is blocked until the reset, then the retry is answered
        two.get_account()  # waits for nothing more: the window is new
        counted = sim.health()["rate_limit"]
        clear(config)
    assert counted["limited"] == 1, counted
