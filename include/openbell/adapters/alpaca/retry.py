"""openbell's one retry policy for Alpaca calls (as Freqtrade's ``retrier``, with tenacity) and what a
failure says: transient failures (HTTP 429, 5xx, connection errors, timeouts) are retried with jittered
backoff, refused credentials raise :class:`~openbell.ports.CredentialsError` at once. A 429 is waited out
for as long as its headers say (:func:`wait_after_429`): ``Retry-After``, else until ``X-RateLimit-Reset``."""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Mapping
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import requests
from alpaca.common.exceptions import APIError
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt
from urllib3 import BaseHTTPResponse
from urllib3.util import Retry

from openbell.adapters.alpaca.budget import MAX_WAIT_SECONDS, READ, WindowBudget
from openbell.ports import CredentialsError

log = logging.getLogger(__name__)

T = TypeVar("T")

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


def status_of(exc: BaseException | None) -> int | None:
    """The HTTP status of an APIError, if known."""
    if isinstance(exc, APIError):
        try:
            return int(exc.status_code)
        except (TypeError, ValueError, AttributeError):
            return None
    return None


def is_transient(exc: BaseException) -> bool:
    """True for failures worth retrying: 429, 5xx, timeouts and connection errors."""
    if isinstance(exc, requests.ConnectionError | requests.Timeout):
        return True
    return status_of(exc) in RETRY_STATUSES


def live_pace() -> float:
    """Wall seconds per market second of a live market: 1."""
    return 1.0


def jittered_backoff(base_delay: float, max_delay: float,
                     pace: Callable[[], float] = live_pace) -> Callable[[RetryCallState], float]:
    """The wait after the n-th failed attempt: ``min(max_delay, base_delay * 2 ** (n - 1))`` market seconds
    times a random factor in [0.5, 1), so clients that failed together do not retry together; ``pace``
    turns market seconds into wall seconds (1 live, ``1 / speed`` in a rehearsal)."""

    def wait(state: RetryCallState) -> float:
        backoff = min(max_delay, base_delay * 2 ** (state.attempt_number - 1)) * (0.5 + random.random() / 2)
        return backoff * pace()

    return wait


def wait_after_429(headers: Mapping[str, str], cap: float = MAX_WAIT_SECONDS, now: float | None = None) -> float | None:
    """Seconds a 429 answer asks to wait, at most ``cap``: its ``Retry-After``, else the time until
    ``X-RateLimit-Reset`` (the window's end, Unix seconds of the server's wall clock, read against the
    answer's ``Date`` when it has one) if ``X-RateLimit-Remaining`` is 0 or absent. None when the headers
    say neither: back off as after any transient failure."""
    retry_after = headers.get("Retry-After")
    if retry_after:
        seconds = _seconds_until(retry_after, now)
        if seconds is not None:
            return min(seconds, cap)
    reset, remaining = headers.get("X-RateLimit-Reset"), headers.get("X-RateLimit-Remaining")
    if not reset or (remaining and remaining.strip() not in ("0", "")):
        return None
    try:
        until = float(reset)
    except ValueError:
        return None
    server_now = _date(headers.get("Date")) if now is None else now
    return min(max(until - (time.time() if server_now is None else server_now), 0.0), cap)


def _seconds_until(retry_after: str, now: float | None) -> float | None:
    try:
        return max(float(retry_after), 0.0)
    except ValueError:
        when = _date(retry_after)
        return None if when is None else max(when - (time.time() if now is None else now), 0.0)


def _date(value: str | None) -> float | None:
    try:
        return parsedate_to_datetime(value).timestamp() if value else None
    except (TypeError, ValueError):
        return None


def rate_limited_backoff(base_delay: float, max_delay: float,
                         pace: Callable[[], float] = live_pace) -> Callable[[RetryCallState], float]:
    """:func:`jittered_backoff`, but after a 429 (an APIError, or a failure raised from one) at least as
    long as its headers ask (:func:`wait_after_429`, wall seconds)."""
    backoff = jittered_backoff(base_delay, max_delay, pace)

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome is not None else None
        while exc is not None and not isinstance(exc, APIError):
            exc = exc.__cause__
        headers = getattr(getattr(exc, "response", None), "headers", None)
        after = wait_after_429(headers) if status_of(exc) == 429 and isinstance(headers, Mapping) else None
        return max(backoff(state), after or 0.0)

    return wait


class RateLimitRetry(Retry):
    """urllib3's retry of GETs, which waits out a 429 as :func:`wait_after_429` says and, with a
    ``budget``, holds every process back until then and counts each retry against it."""

    budget: WindowBudget | None = None

    def new(self, **kw: Any) -> RateLimitRetry:
        again = super().new(**kw)
        again.budget = self.budget
        return again

    def with_budget(self, budget: WindowBudget | None) -> RateLimitRetry:
        """This policy, drawing on ``budget``."""
        again = self.new()
        again.budget = budget
        return again

    def get_backoff_time(self) -> float:
        """urllib3's backoff, in market seconds (see :meth:`RequestBudget.pace`)."""
        backoff = super().get_backoff_time()
        return backoff if self.budget is None else backoff * self.budget.pace()

    def sleep(self, response: BaseHTTPResponse | None = None) -> None:
        budget = self.budget
        cap = MAX_WAIT_SECONDS if budget is None else budget.wait_cap()
        wait = wait_after_429(response.headers, cap) if response is not None and response.status == 429 else None
        if not wait:
            super().sleep(response)
        elif budget is not None:
            budget.block(wait)
        else:
            time.sleep(wait)
        if budget is not None:
            budget.acquire(READ)


def retrying(
    *,
    attempts: int,
    base_delay: float,
    max_delay: float,
    retry_on: Callable[[BaseException], bool] = is_transient,
    before_sleep: Callable[[RetryCallState], None] | None = None,
    pace: Callable[[], float] = live_pace,
) -> Retrying:
    """openbell's one retry policy for broker calls (as Freqtrade's ``retrier``, with tenacity).

    At most ``attempts`` attempts, :func:`rate_limited_backoff` (in market seconds, see ``pace``) between
    them, and only failures ``retry_on``
    accepts are retried (by default :func:`is_transient`: 429, 5xx, timeouts, connection errors). Any
    other failure, or the last one, is raised as it is. Used by :func:`call` and by
    :mod:`openbell.adapters.alpaca.broker` (order lookup and the idempotent submit).
    """
    if attempts < 1:
        raise ValueError(f"attempts must be >= 1, not {attempts}")
    return Retrying(
        stop=stop_after_attempt(attempts),
        wait=rate_limited_backoff(base_delay, max_delay, pace),
        retry=retry_if_exception(retry_on),
        before_sleep=before_sleep,
        reraise=True,
    )


def call(
    fn: Callable[..., T],
    *args: Any,
    attempts: int = 6,
    base_delay: float = 0.25,
    max_delay: float = 8.0,
    what: str = "",
    conn_id: str = "",
    pace: Callable[[], float] = live_pace,
    **kwargs: Any,
) -> T:
    """Call ``fn`` retrying transient failures with jittered exponential backoff (:func:`retrying`).

    Refused credentials raise :class:`CredentialsError` at once (never retried), naming ``conn_id``
    when given. Only idempotent calls may be passed here; orders go through the broker's idempotent
    submit path.
    """

    def attempt() -> T:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            if status_of(exc) in (401, 403) and is_auth_error(exc):
                source = f" of connection {conn_id!r}" if conn_id else ""
                raise CredentialsError(f"Alpaca refused the credentials{source}: {error_message(exc)}") from exc
            raise

    def log_retry(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        log.warning("%s failed (%s), retry %d/%d in %.2fs", what or getattr(fn, "__name__", "call"),
                    error_message(exc) if exc is not None else "?", state.attempt_number, attempts - 1,
                    state.upcoming_sleep)

    policy = retrying(attempts=attempts, base_delay=base_delay, max_delay=max_delay, before_sleep=log_retry,
                      pace=pace)
    return policy(attempt)


def error_message(exc: BaseException) -> str:
    """The broker's message of an APIError (never the request, so never credentials)."""
    if isinstance(exc, APIError):
        try:
            return str(json.loads(str(exc)).get("message", exc))
        except (ValueError, AttributeError):
            return str(exc)
    return f"{type(exc).__name__}: {exc}"


def is_auth_error(exc: BaseException) -> bool:
    """A 401, or a 403 whose message says the key was refused (not an order refusal)."""
    if status_of(exc) == 401:
        return True
    text = error_message(exc).lower()
    return "forbidden" in text or "unauthorized" in text or "access key" in text
