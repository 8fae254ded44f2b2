"""Alpaca access: connection settings and alpaca-py clients with timeouts and a retry policy.

Every broker or data call in openbell goes through the clients built here, so a hung server cannot
hang a task (each REST request has a timeout) and transient failures (HTTP 429, 5xx, connection
errors) are retried with backoff by :func:`call`. Credentials come from the Airflow connection
``alpaca_default`` or from the environment, and never appear in ``repr`` or logs.
"""

from __future__ import annotations

import json
import logging
import os
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import requests
from alpaca.common.exceptions import APIError
from alpaca.data.enums import DataFeed
from alpaca.data.historical import StockHistoricalDataClient
from alpaca.data.live import StockDataStream
from alpaca.trading.client import TradingClient
from alpaca.trading.stream import TradingStream
from requests.adapters import HTTPAdapter
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt
from urllib3.util import Retry

log = logging.getLogger(__name__)

T = TypeVar("T")

CONN_ID = "alpaca_default"
PAPER_TRADING_URL = "https://paper-api.alpaca.markets"
LIVE_TRADING_URL = "https://api.alpaca.markets"
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class CredentialsError(RuntimeError):
    """The broker refused the configured credentials."""


@dataclass(frozen=True)
class AlpacaConfig:
    """Where and how to reach Alpaca (or the simulator). Secrets are hidden from ``repr``."""

    key_id: str = field(repr=False)
    secret_key: str = field(repr=False)
    paper: bool = True
    feed: str = "iex"
    trading_url: str | None = None
    data_url: str | None = None
    stream_url: str | None = None
    trade_stream_url: str | None = None
    clock_url: str | None = None
    conn_id: str = CONN_ID
    timeout: float = 10.0

    @property
    def simulated(self) -> bool:
        """True when the market clock is published by the simulator."""
        return self.clock_url is not None

    @classmethod
    def for_simulator(cls, base_url: str, key_id: str, secret_key: str, **kw: Any) -> AlpacaConfig:
        """Settings for an openbell simulator serving every endpoint at ``base_url``."""
        base = base_url.rstrip("/")
        ws = "ws" + base[len("http") :] if base.startswith("http") else base
        feed = kw.pop("feed", "iex")
        return cls(
            key_id=key_id,
            secret_key=secret_key,
            paper=True,
            feed=feed,
            trading_url=base,
            data_url=base,
            stream_url=f"{ws}/v2/{feed}",
            trade_stream_url=f"{ws}/stream",
            clock_url=f"{base}/sim/clock",
            **kw,
        )

    @classmethod
    def from_extra(cls, key_id: str, secret_key: str, extra: dict[str, Any], conn_id: str = CONN_ID) -> AlpacaConfig:
        """Settings from a connection's login, password and JSON extra.

        Extra keys: ``paper`` (bool), ``feed`` (iex|sip), ``simulator_url`` (one URL for every
        endpoint of an openbell simulator), or ``trading_url``/``data_url``/``stream_url``/
        ``trade_stream_url`` individually.
        """
        if not key_id or not secret_key:
            raise CredentialsError(f"connection {conn_id!r} has no key id (login) or secret (password)")
        feed = str(extra.get("feed", "iex")).lower()
        if feed not in ("iex", "sip"):
            raise ValueError(f"connection {conn_id!r}: feed must be 'iex' or 'sip', not {feed!r}")
        if extra.get("simulator_url"):
            return cls.for_simulator(str(extra["simulator_url"]), key_id, secret_key, feed=feed, conn_id=conn_id)
        return cls(
            key_id=key_id,
            secret_key=secret_key,
            paper=_paper_flag(extra, conn_id),
            feed=feed,
            trading_url=extra.get("trading_url"),
            data_url=extra.get("data_url"),
            stream_url=extra.get("stream_url"),
            trade_stream_url=extra.get("trade_stream_url"),
            conn_id=conn_id,
        )

    @classmethod
    def from_env(cls) -> AlpacaConfig:
        """Settings from ``APCA_API_KEY_ID``/``APCA_API_SECRET_KEY`` and ``OPENBELL_SIM_URL``."""
        extra: dict[str, Any] = {"feed": os.environ.get("OPENBELL_FEED", "iex")}
        if os.environ.get("OPENBELL_SIM_URL"):
            extra["simulator_url"] = os.environ["OPENBELL_SIM_URL"]
        return cls.from_extra(
            os.environ.get("APCA_API_KEY_ID", ""), os.environ.get("APCA_API_SECRET_KEY", ""), extra, "environment"
        )

    @classmethod
    def from_airflow(cls, conn_id: str = CONN_ID) -> AlpacaConfig:
        """Settings from an Airflow connection (login = key id, password = secret)."""
        from airflow.sdk import BaseHook

        conn = BaseHook.get_connection(conn_id)
        extra = conn.extra_dejson if conn.extra else {}
        return cls.from_extra(conn.login or "", conn.password or "", extra, conn_id)

    def to_extra(self) -> dict[str, Any]:
        """The connection extra that reproduces these settings (no secrets)."""
        if self.clock_url and self.trading_url:
            return {"simulator_url": self.trading_url, "feed": self.feed}
        out: dict[str, Any] = {"paper": self.paper, "feed": self.feed}
        for key in ("trading_url", "data_url", "stream_url", "trade_stream_url"):
            if getattr(self, key):
                out[key] = getattr(self, key)
        return out

    # -- clients ---------------------------------------------------------------------------------

    def trading_client(self, raw_data: bool = False) -> TradingClient:
        """A TradingClient with a request timeout and the SDK's own retries switched off."""
        client = TradingClient(
            self.key_id, self.secret_key, paper=self.paper, raw_data=raw_data, url_override=self.trading_url
        )
        return _harden(client, self.timeout)

    def data_client(self, raw_data: bool = False) -> StockHistoricalDataClient:
        """A StockHistoricalDataClient with a request timeout and the SDK's own retries switched off."""
        client = StockHistoricalDataClient(
            self.key_id, self.secret_key, raw_data=raw_data, url_override=self.data_url
        )
        return _harden(client, self.timeout)

    def data_stream(self, **kw: Any) -> StockDataStream:
        """A StockDataStream for this feed."""
        return StockDataStream(
            self.key_id, self.secret_key, feed=DataFeed(self.feed), url_override=self.stream_url, **kw
        )

    def trading_stream(self, **kw: Any) -> TradingStream:
        """A TradingStream for trade updates."""
        return TradingStream(
            self.key_id, self.secret_key, paper=self.paper, url_override=self.trade_stream_url, **kw
        )


# Every GET that fails transiently is retried where it failed: one failed page of a paginated bar
# request costs that page, not the pages before it. Orders (POST) are never retried here: their
# idempotent path (openbell.broker.orders.submit) asks the broker before sending again.
GET_RETRY = Retry(
    total=6,
    status=6,
    read=3,
    allowed_methods=frozenset({"GET"}),
    status_forcelist=RETRY_STATUSES,
    backoff_factor=0.1,
    backoff_max=4.0,
    backoff_jitter=0.1,
    raise_on_status=False,  # the last answer reaches alpaca-py, which raises its APIError
    respect_retry_after_header=True,
    retry_after_max=60,
)


class _TimeoutSession(requests.Session):
    """A requests session whose every request has a default timeout and whose GETs retry transient failures."""

    def __init__(self, timeout: float) -> None:
        super().__init__()
        self.default_timeout = timeout
        adapter = HTTPAdapter(max_retries=GET_RETRY)
        self.mount("http://", adapter)
        self.mount("https://", adapter)

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        kwargs.setdefault("timeout", self.default_timeout)
        return super().request(method, url, *args, **kwargs)


def _harden(client: T, timeout: float) -> T:
    client._session = _TimeoutSession(timeout)  # type: ignore[attr-defined]
    client._retry = 0  # type: ignore[attr-defined]  # retries are ours: see call()
    return client


def _paper_flag(extra: dict[str, Any], conn_id: str) -> bool:
    """The extra's ``paper``: absent means paper; only a boolean or the strings true/false are accepted,
    because anything read as false selects the live account."""
    value = extra.get("paper", True)
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ValueError(
        f"connection {conn_id!r}: extra field 'paper' must be true or false, not {value!r}"
        " (nothing was sent to any account)"
    )


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
    :mod:`openbell.broker.orders` (order lookup and the idempotent submit).
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
