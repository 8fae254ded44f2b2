"""The one retry policy (openbell.adapters.alpaca.retry.retrying) as call(), find_order() and submit() use it: which
failures are retried, how often, what is never retried or resent, and the log lines. Fakes only."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
import requests
from alpaca.common.exceptions import APIError
from alpaca.trading.models import Order

from openbell.adapters.alpaca import retry as ob_retry
from openbell.adapters.alpaca.broker import find_order, submit
from openbell.adapters.alpaca.convert import order_report
from openbell.adapters.alpaca.retry import CredentialsError, call, jittered_backoff, retrying
from openbell.ports import Deadline
from openbell.risk.gate import GatedDeadline, GateLatch


def api_error(status: int, message: str = "boom") -> APIError:
    return APIError(json.dumps({"code": status, "message": message}),
                    SimpleNamespace(response=SimpleNamespace(status_code=status), request=None))


@pytest.fixture(autouse=True)
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[float]]:
    slept: list[float] = []
    monkeypatch.setattr("time.sleep", slept.append)
    yield slept


def failing(*errors: BaseException, result: Any = "ok") -> Any:
    """A callable raising ``errors`` one per call, then returning ``result``; ``.calls`` counts calls."""
    todo = list(errors)

    def fn(*args: Any, **kwargs: Any) -> Any:
        fn.calls += 1  # type: ignore[attr-defined]
        if todo:
            raise todo.pop(0)
        return result

    fn.calls = 0  # type: ignore[attr-defined]
    return fn


def test_backoff_doubles_to_its_cap_with_jitter_in_half_to_full(monkeypatch: pytest.MonkeyPatch) -> None:
    wait = jittered_backoff(0.25, 8.0)
    for jitter, factor in ((0.0, 0.5), (0.999999, 1.0)):
        monkeypatch.setattr(ob_retry.random, "random", lambda j=jitter: j)
        got = [wait(SimpleNamespace(attempt_number=n)) for n in range(1, 8)]  # type: ignore[arg-type]
        assert got == pytest.approx([min(8.0, 0.25 * 2 ** (n - 1)) * factor for n in range(1, 8)], rel=1e-5)


def test_call_retries_transient_failures_and_logs_each_retry(no_sleep: list[float],
                                                             caplog: pytest.LogCaptureFixture) -> None:
    fn = failing(api_error(429), api_error(503), requests.ConnectionError("reset"), requests.Timeout("slow"))
    with caplog.at_level(logging.WARNING, logger="openbell.adapters.alpaca.retry"):
        assert call(fn, what="get_account") == "ok"
    assert fn.calls == 5 and len(no_sleep) == 4
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 4 and lines[0].startswith("get_account failed (boom), retry 1/5 in ")
    assert lines[3].startswith("get_account failed (Timeout: slow), retry 4/5 in ")


def test_call_gives_up_after_its_attempts_with_the_last_error() -> None:
    fn = failing(*(api_error(500, f"e{i}") for i in range(6)))
    with pytest.raises(APIError, match="e5"):
        call(fn)
    assert fn.calls == 6
    fn = failing(*(api_error(502) for _ in range(3)))
    with pytest.raises(APIError):
        call(fn, attempts=2)
    assert fn.calls == 2


@pytest.mark.parametrize("error", [api_error(404), api_error(422), api_error(403, "insufficient buying power"),
                                   ValueError("bad")])
def test_call_does_not_retry_other_failures(error: BaseException) -> None:
    fn = failing(error)
    with pytest.raises(type(error)):
        call(fn)
    assert fn.calls == 1


@pytest.mark.parametrize("error", [api_error(401, "unauthorized."), api_error(403, "forbidden.")])
def test_call_raises_refused_credentials_at_once(error: APIError) -> None:
    fn = failing(error, error)
    with pytest.raises(CredentialsError, match="connection 'alpaca_default'") as info:
        call(fn, conn_id="alpaca_default")
    assert fn.calls == 1 and info.value.__cause__ is error


def test_the_policy_refuses_zero_attempts() -> None:
    with pytest.raises(ValueError, match="attempts"):
        retrying(attempts=0, base_delay=0.1, max_delay=1.0)


class FakeBroker:
    """A TradingClient double: scripted answers for submit_order and get_order_by_client_id."""

    def __init__(self, submits: list[Any], lookups: list[Any]) -> None:
        self.submits, self.lookups = submits, lookups
        self.sent = 0
        self.looked = 0

    @staticmethod
    def _answer(script: list[Any]) -> Any:
        item = script.pop(0)
        if isinstance(item, BaseException):
            raise item
        return item

    def submit_order(self, request: Any) -> Any:
        self.sent += 1
        return self._answer(self.submits)

    def get_order_by_client_id(self, client_order_id: str) -> Any:
        self.looked += 1
        return self._answer(self.lookups)


ORDER = Order(**{
    "id": "3b1f6a8e-93f4-4d37-9a7b-0b7b5d1f0e11", "client_order_id": "ob-20251120-1-SSO",
    "created_at": "2025-11-20T15:00:01Z", "updated_at": "2025-11-20T15:00:01Z",
    "submitted_at": "2025-11-20T15:00:01Z", "symbol": "SSO", "asset_class": "us_equity", "qty": "1",
    "filled_qty": "0", "order_type": "market", "type": "market", "side": "buy", "time_in_force": "day",
    "status": "accepted", "extended_hours": False, "order_class": "",
})
REPORT = order_report(ORDER)  # what a submission returns for ORDER


def _submit(broker: FakeBroker, attempts: int = 4) -> Any:
    return submit(broker, client_order_id="ob-20251120-1-SSO", symbol="SSO", qty=1, side="buy",  # type: ignore[arg-type]
                  attempts=attempts)


def test_find_order_retries_transient_failures_and_reads_404_as_none() -> None:
    broker = FakeBroker([], [api_error(503), requests.ConnectionError("x"), ORDER])
    assert find_order(broker, "c") is ORDER and broker.looked == 3  # type: ignore[arg-type]
    broker = FakeBroker([], [api_error(429), api_error(404)])
    assert find_order(broker, "c") is None and broker.looked == 2  # type: ignore[arg-type]
    broker = FakeBroker([], [api_error(500)] * 4)
    with pytest.raises(APIError):
        find_order(broker, "c")  # type: ignore[arg-type]
    assert broker.looked == 4
    broker = FakeBroker([], [api_error(401)])
    with pytest.raises(APIError):
        find_order(broker, "c")  # type: ignore[arg-type]
    assert broker.looked == 1


def test_submit_looks_the_id_up_before_sending_again(caplog: pytest.LogCaptureFixture) -> None:
    broker = FakeBroker([requests.Timeout("t"), ORDER], [api_error(404)])
    with caplog.at_level(logging.WARNING, logger="openbell.adapters.alpaca.broker"):
        result = _submit(broker)
    assert (result.outcome, broker.sent, broker.looked) == ("submitted", 2, 1)
    assert [r.getMessage() for r in caplog.records] == [
        "submit ob-20251120-1-SSO failed (Timeout: t), attempt 1/4"]


def test_submit_finds_an_order_the_broker_took_despite_the_error() -> None:
    broker = FakeBroker([api_error(504)], [ORDER])
    result = _submit(broker)
    assert (result.outcome, result.order, broker.sent) == ("existing", REPORT, 1)


def test_submit_never_resends_after_a_duplicate_id() -> None:
    broker = FakeBroker([api_error(422, "client_order_id must be unique")], [api_error(404)] * 4)
    result = _submit(broker)
    assert (result.outcome, result.http_status, broker.sent) == ("unknown", 422, 1)


def test_submit_reports_refusals_without_retrying() -> None:
    broker = FakeBroker([api_error(403, "insufficient buying power")], [])
    result = _submit(broker)
    assert (result.outcome, result.http_status, result.reason, broker.sent, broker.looked) == (
        "rejected", 403, "insufficient buying power", 1, 0)


@pytest.mark.parametrize(("status", "message"), [(401, "unauthorized."), (403, "forbidden.")])
def test_refused_credentials_on_submit_are_not_sent_at_once_and_never_looked_up(status: int, message: str) -> None:
    """A refused key is no unknown outcome: the broker made no order, and its lookups would fail as well."""
    broker = FakeBroker([api_error(status, message)], [])
    result = _submit(broker)
    assert (result.outcome, result.refusal, result.http_status, broker.sent, broker.looked) == (
        "not_sent", "credentials", status, 1, 0)
    assert message in (result.reason or "")


def test_submit_past_its_deadline_sends_nothing(no_sleep: list[float]) -> None:
    broker = FakeBroker([], [])
    past = Deadline(datetime(2025, 11, 20, 20, 58, tzinfo=UTC), time.time() - 0.001)
    result = submit(broker, client_order_id="ob-1", symbol="SSO", qty=1, side="buy", deadline=past)  # type: ignore[arg-type]
    assert (result.outcome, broker.sent, broker.looked) == ("not_sent", 0, 0)
    assert "cut-off 2025-11-20T20:58:00+00:00" in (result.reason or "")


def test_submit_whose_retry_meets_its_deadline_is_unknown_not_resent(no_sleep: list[float]) -> None:
    """The first send failed and the broker shows no order yet; by the retry the deadline has passed: it is not
    sent again, and its outcome stays unknown (the first request may yet reach the broker)."""
    broker = FakeBroker([api_error(500, "e0")], [api_error(404)])
    left = iter([1.0, -0.5])  # wall seconds left at each attempt
    deadline = _Ticking(datetime(2025, 11, 20, 20, 58, tzinfo=UTC), 0.0, left)
    result = submit(broker, client_order_id="ob-1", symbol="SSO", qty=1, side="buy", deadline=deadline)  # type: ignore[arg-type]
    assert (result.outcome, broker.sent, broker.looked) == ("unknown", 1, 1)


def test_a_job_held_when_the_send_gate_closes_is_not_sent_and_says_why(no_sleep: list[float]) -> None:
    broker = FakeBroker([ORDER], [])
    latch = GateLatch("the risk state is HALTED")
    deadline = GatedDeadline(datetime(2025, 11, 20, 20, 58, tzinfo=UTC), time.time() + 600, latch)
    result = submit(broker, client_order_id="ob-1", symbol="SSO", qty=1, side="buy", deadline=deadline)  # type: ignore[arg-type]
    assert (result.outcome, broker.sent) == ("not_sent", 0)
    assert result.reason == "the send gate closed before it was sent: the risk state is HALTED"


@dataclass(frozen=True)
class _Ticking(Deadline):
    """A deadline whose wall seconds left are given, one per look."""

    left: Iterator[float] = field(default_factory=lambda: iter(()), compare=False)

    def remaining(self) -> float:
        return next(self.left)


def test_submit_gives_up_unknown_after_its_attempts(no_sleep: list[float], caplog: pytest.LogCaptureFixture) -> None:
    broker = FakeBroker([api_error(500, f"e{i}") for i in range(3)], [api_error(404)] * 3)
    with caplog.at_level(logging.WARNING, logger="openbell.adapters.alpaca.broker"):
        result = _submit(broker, attempts=3)
    assert (result.outcome, result.reason, broker.sent, broker.looked) == ("unknown", "e2", 3, 3)
    assert len(no_sleep) == 2  # no wait after the last attempt
    assert [r.getMessage().rsplit(" ", 1)[-1] for r in caplog.records] == ["1/3", "2/3", "3/3"]


def test_submit_survives_a_failed_lookup(caplog: pytest.LogCaptureFixture) -> None:
    broker = FakeBroker([api_error(503), ORDER], [api_error(500)] * 4)
    with caplog.at_level(logging.WARNING, logger="openbell.adapters.alpaca.broker"):
        result = _submit(broker)
    assert (result.outcome, broker.sent, broker.looked) == ("submitted", 2, 4)
    assert caplog.records[0].getMessage() == "lookup of ob-20251120-1-SSO failed: boom"
