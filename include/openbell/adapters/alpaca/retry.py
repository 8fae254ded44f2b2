"""openbell's one retry policy for Alpaca calls (as Freqtrade's ``retrier``, with tenacity) and what a
failure says: transient failures (HTTP 429, 5xx, connection errors, timeouts) are retried with jittered
backoff, refused credentials raise :class:`~openbell.ports.CredentialsError` at once."""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Callable
from typing import Any, TypeVar

import requests
from alpaca.common.exceptions import APIError
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

from openbell.ports import CredentialsError

log = logging.getLogger(__name__)

T = TypeVar("T")

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


def status_of(exc: BaseException) -> int | None:
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


def jittered_backoff(base_delay: float, max_delay: float) -> Callable[[RetryCallState], float]:
    """The wait after the n-th failed attempt: ``min(max_delay, base_delay * 2 ** (n - 1))`` times a random
    factor in [0.5, 1), so clients that failed together do not retry together."""

    def wait(state: RetryCallState) -> float:
        return min(max_delay, base_delay * 2 ** (state.attempt_number - 1)) * (0.5 + random.random() / 2)

    return wait


def retrying(
    *,
    attempts: int,
    base_delay: float,
    max_delay: float,
    retry_on: Callable[[BaseException], bool] = is_transient,
    before_sleep: Callable[[RetryCallState], None] | None = None,
) -> Retrying:
    """openbell's one retry policy for broker calls (as Freqtrade's ``retrier``, with tenacity).

    At most ``attempts`` attempts, :func:`jittered_backoff` between them, and only failures ``retry_on``
    accepts are retried (by default :func:`is_transient`: 429, 5xx, timeouts, connection errors). Any
    other failure, or the last one, is raised as it is. Used by :func:`call` and by
    :mod:`openbell.adapters.alpaca.broker` (order lookup and the idempotent submit).
    """
    if attempts < 1:
        raise ValueError(f"attempts must be >= 1, not {attempts}")
    return Retrying(
        stop=stop_after_attempt(attempts),
        wait=jittered_backoff(base_delay, max_delay),
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
            if status_of(exc) in (401, 403) and _is_auth_error(exc):
                source = f" of connection {conn_id!r}" if conn_id else ""
                raise CredentialsError(f"Alpaca refused the credentials{source}: {error_message(exc)}") from exc
            raise

    def log_retry(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        log.warning("%s failed (%s), retry %d/%d in %.2fs", what or getattr(fn, "__name__", "call"),
                    error_message(exc) if exc is not None else "?", state.attempt_number, attempts - 1,
                    state.upcoming_sleep)

    policy = retrying(attempts=attempts, base_delay=base_delay, max_delay=max_delay, before_sleep=log_retry)
    return policy(attempt)


def error_message(exc: BaseException) -> str:
    """The broker's message of an APIError (never the request, so never credentials)."""
    if isinstance(exc, APIError):
        try:
            return str(json.loads(str(exc)).get("message", exc))
        except (ValueError, AttributeError):
            return str(exc)
    return f"{type(exc).__name__}: {exc}"


def _is_auth_error(exc: BaseException) -> bool:
    if status_of(exc) == 401:
        return True
    text = error_message(exc).lower()
    return "forbidden" in text or "unauthorized" in text or "access key" in text
