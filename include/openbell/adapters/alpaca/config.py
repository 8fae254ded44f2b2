"""Alpaca connection settings and alpaca-py clients with timeouts and no retries of their own.

Every broker or data call goes through the clients built here, so a hung server cannot hang a task (each
REST request has a timeout); transient failures are retried by :func:`openbell.adapters.alpaca.retry.call`.
Trading API requests draw on the key's shared request budget (:mod:`~openbell.adapters.alpaca.budget`; in
the state database, shared by every machine, when ``budget_url`` is set: :mod:`~openbell.adapters.alpaca.pg_budget`).
Credentials come from the Airflow connection ``alpaca_default`` or from the environment, and never appear
in ``repr`` or logs. The ``paper`` flag and the account URLs must agree (:meth:`AlpacaConfig.__post_init__`):
paper with Alpaca's live host, or live with its paper host, is refused before anything is sent.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeVar
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

from openbell.adapters.alpaca.budget import (
    DEFAULT_LIMIT,
    DEFAULT_READ_SHARE,
    ORDER,
    READ,
    MarketMinute,
    RequestBudget,
    WindowBudget,
    key_digest,
    state_path,
)
from openbell.adapters.alpaca.pg_budget import PgRequestBudget
from openbell.adapters.alpaca.retry import RETRY_STATUSES, RateLimitRetry
from openbell.ports import CredentialsError

if TYPE_CHECKING:  # the clients load where they are built: an order worker needs the trading client alone
    from alpaca.data.historical import StockHistoricalDataClient
    from alpaca.data.live import StockDataStream
    from alpaca.trading.client import TradingClient
    from alpaca.trading.stream import TradingStream

__all__ = ["CONN_ID", "LIVE_TRADING_URL", "PAPER_TRADING_URL", "AlpacaConfig", "CredentialsError", "endpoint_kind",
           "shown_url"]

T = TypeVar("T")

CONN_ID = "alpaca_default"
PAPER_HOST = "paper-api.alpaca.markets"
LIVE_HOST = "api.alpaca.markets"
PAPER_TRADING_URL = f"https://{PAPER_HOST}"
LIVE_TRADING_URL = f"https://{LIVE_HOST}"

Endpoint = Literal["live", "paper", "local", "other"]
# The URLs that choose an account: the Trading API and its trade-updates stream. Market data (data_url,
# stream_url) is served by one host to paper and live keys alike, so those never say which account trades.
ACCOUNT_URL_FIELDS = ("trading_url", "trade_stream_url")


@dataclass(frozen=True)
class AlpacaConfig:
    """Where and how to reach Alpaca (or the simulator). Secrets are hidden from ``repr``.

    ``rate_limit`` is the Trading API's limit of requests per (market) minute for this key (0: no budget);
    reads may use ``rate_read_share`` of it, orders the rest (:class:`~openbell.adapters.alpaca.budget.RequestBudget`).
    ``budget_url`` (a state database URL, hidden like the secrets and never part of :meth:`to_extra`) keeps that
    budget in the database, shared by every machine (:class:`~openbell.adapters.alpaca.pg_budget.PgRequestBudget`);
    without it the budget is shared by the processes of this host only.
    """

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
    rate_limit: int = DEFAULT_LIMIT
    rate_read_share: float = DEFAULT_READ_SHARE
    budget_url: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        """Refuse a ``paper`` flag that disagrees with an account URL: paper on Alpaca's live host would trade
        real money under a connection that says paper, live on its paper host would not trade what it says.
        Every way of building the settings passes here (``dataclasses.replace`` too, as ``--live`` does)."""
        for name in ACCOUNT_URL_FIELDS:
            url = getattr(self, name)
            kind = endpoint_kind(url) if url is not None else None
            if kind == ("live" if self.paper else "paper"):
                field_name = "simulator_url" if self.simulated and name == "trading_url" else name
                flag = "a simulator (paper)" if self.simulated else f"'paper' is {str(self.paper).lower()}"
                if self.simulated:
                    fix = "simulator_url is an openbell simulator's address, never Alpaca's"
                elif self.paper:
                    fix = f'set "paper": false to trade the live account, or use {PAPER_TRADING_URL}'
                else:
                    fix = f'set "paper": true to trade the paper account, or use {LIVE_TRADING_URL}'
                raise ValueError(
                    f"connection {self.conn_id!r}: {flag} but {field_name} {shown_url(url)!r} is Alpaca's"
                    f" {kind} host {LIVE_HOST if kind == 'live' else PAPER_HOST}: {fix}"
                    " (nothing was sent to any account)"
                )

    @property
    def simulated(self) -> bool:
        """True when the market clock is published by the simulator."""
        return self.clock_url is not None

    @property
    def trading_base_url(self) -> str:
        """The Trading API these settings reach: ``trading_url``, else Alpaca's paper or live URL."""
        return self.trading_url or (PAPER_TRADING_URL if self.paper else LIVE_TRADING_URL)

    def endpoint(self) -> str:
        """Which account endpoint these settings reach, for a person: the Trading API's URL (never
        credentials) and whether it is Alpaca's paper or live host, a simulator or some other host."""
        url = shown_url(self.trading_base_url)
        kind = endpoint_kind(self.trading_base_url)
        if self.simulated:
            return f"at {url} ({'a local simulator' if kind == 'local' else 'a simulator on another host'})"
        label = {
            "live": "Alpaca's live endpoint: real money",
            "paper": "Alpaca's paper endpoint",
            "local": "a local endpoint, not Alpaca's",
            "other": "not an Alpaca host: its account is whatever that host serves",
        }[kind]
        return f"at {url} ({label})"

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
        ``trade_stream_url`` individually; ``rate_limit`` (requests per minute, default 200).
        """
        if not key_id or not secret_key:
            raise CredentialsError(f"connection {conn_id!r} has no key id (login) or secret (password)")
        feed = str(extra.get("feed", "iex")).lower()
        if feed not in ("iex", "sip"):
            raise ValueError(f"connection {conn_id!r}: feed must be 'iex' or 'sip', not {feed!r}")
        limits = {"rate_limit": _rate_limit(extra, conn_id)}
        if extra.get("simulator_url"):
            return cls.for_simulator(str(extra["simulator_url"]), key_id, secret_key, feed=feed, conn_id=conn_id,
                                     **limits)
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
            **limits,
        )

    @classmethod
    def from_env(cls) -> AlpacaConfig:
        """Settings from ``APCA_API_KEY_ID``/``APCA_API_SECRET_KEY``, ``OPENBELL_SIM_URL`` and
        ``OPENBELL_RATE_LIMIT``."""
        extra: dict[str, Any] = {"feed": os.environ.get("OPENBELL_FEED", "iex")}
        if os.environ.get("OPENBELL_SIM_URL"):
            extra["simulator_url"] = os.environ["OPENBELL_SIM_URL"]
        if os.environ.get("OPENBELL_RATE_LIMIT"):
            extra["rate_limit"] = os.environ["OPENBELL_RATE_LIMIT"]
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
        limits = {} if self.rate_limit == DEFAULT_LIMIT else {"rate_limit": self.rate_limit}
        if self.clock_url and self.trading_url:
            return {"simulator_url": self.trading_url, "feed": self.feed, **limits}
        out: dict[str, Any] = {"paper": self.paper, "feed": self.feed, **limits}
        for key in ("trading_url", "data_url", "stream_url", "trade_stream_url"):
            if getattr(self, key):
                out[key] = getattr(self, key)
        return out

    def rate_budget(self) -> WindowBudget | None:
        """This key's request budget on its Trading API, shared by every process that builds it (None when
        ``rate_limit`` is 0): in the database at ``budget_url`` when set (every machine), else in a file of
        this host."""
        if self.rate_limit <= 0:
            return None
        url = self.trading_base_url
        window = MarketMinute(self.clock_url, timeout=min(self.timeout, 5.0))
        if self.budget_url:
            return PgRequestBudget(self.rate_limit, self.budget_url, key_digest(self.key_id, url),
                                   read_share=self.rate_read_share, window=window)
        return RequestBudget(self.rate_limit, state_path(self.key_id, url), read_share=self.rate_read_share,
                             window=window)

    # -- clients ---------------------------------------------------------------------------------

    def trading_client(self, raw_data: bool = False) -> TradingClient:
        """A TradingClient with a request timeout, the SDK's own retries switched off and every request
        drawn from :meth:`rate_budget`."""
        from alpaca.trading.client import TradingClient

        client = TradingClient(
            self.key_id, self.secret_key, paper=self.paper, raw_data=raw_data, url_override=self.trading_url
        )
        return _harden(client, self.timeout, self.rate_budget())

    def data_client(self, raw_data: bool = False) -> StockHistoricalDataClient:
        """A StockHistoricalDataClient with a request timeout and the SDK's own retries switched off."""
        from alpaca.data.historical import StockHistoricalDataClient

        client = StockHistoricalDataClient(
            self.key_id, self.secret_key, raw_data=raw_data, url_override=self.data_url
        )
        return _harden(client, self.timeout)

    def data_stream(self, **kw: Any) -> StockDataStream:
        """A StockDataStream for this feed."""
        from alpaca.data.enums import DataFeed
        from alpaca.data.live import StockDataStream

        return StockDataStream(
            self.key_id, self.secret_key, feed=DataFeed(self.feed), url_override=self.stream_url, **kw
        )

    def trading_stream(self, **kw: Any) -> TradingStream:
        """A TradingStream for trade updates."""
        from alpaca.trading.stream import TradingStream

        return TradingStream(
            self.key_id, self.secret_key, paper=self.paper, url_override=self.trade_stream_url, **kw
        )


# Every GET that fails transiently is retried where it failed: one failed page of a paginated bar
# request costs that page, not the pages before it; a 429 is waited out as its headers say. Orders
# (POST) are never retried here: their idempotent path (openbell.adapters.alpaca.broker.submit) asks
# the broker before sending again.
GET_RETRY = RateLimitRetry(
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
    """A requests session whose every request has a default timeout and whose GETs retry transient failures.
    With a ``budget``, each request first takes a slot of it: GETs as reads, anything else as an order."""

    def __init__(self, timeout: float, budget: WindowBudget | None = None) -> None:
        super().__init__()
        self.default_timeout = timeout
        self.budget = budget
        adapter = HTTPAdapter(max_retries=GET_RETRY.with_budget(budget))
        self.mount("http://", adapter)
        self.mount("https://", adapter)

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        kwargs.setdefault("timeout", self.default_timeout)
        if self.budget is not None:
            verb = method.decode() if isinstance(method, bytes) else method
            self.budget.acquire(READ if verb.upper() == "GET" else ORDER)
        return super().request(method, url, *args, **kwargs)


def _harden(client: T, timeout: float, budget: WindowBudget | None = None) -> T:
    client._session = _TimeoutSession(timeout, budget)  # type: ignore[attr-defined]
    client._retry = 0  # type: ignore[attr-defined]  # retries are ours: see retry.call()
    return client


def _host(url: str) -> str | None:
    """The host of ``url`` as a resolver sees it: lowercased, IDNA-encoded (``api\u3002alpaca.markets`` is
    ``api.alpaca.markets``) and without a trailing dot; a URL without a scheme is read as ``host[:port][/path]``.
    None when there is no host or the URL does not parse."""
    text = url.strip()
    try:
        host = urlsplit(text if "://" in text else "//" + text).hostname
    except ValueError:  # e.g. an unclosed IPv6 bracket: the client cannot reach it either
        return None
    if host and not host.isascii():
        try:
            host = host.encode("idna").decode("ascii").lower()
        except UnicodeError:
            return None
    return host.rstrip(".") if host else None


def endpoint_kind(url: str) -> Endpoint:
    """``live`` or ``paper`` for Alpaca's trading hosts (any scheme, port, path or case), ``local`` for this
    machine (localhost, a loopback address), else ``other``."""
    host = _host(url)
    if host == LIVE_HOST:
        return "live"
    if host == PAPER_HOST:
        return "paper"
    if host is None:
        return "other"
    if host == "localhost" or host.endswith(".localhost"):
        return "local"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return "other"
    mapped = getattr(address, "ipv4_mapped", None)
    return "local" if address.is_loopback or (mapped is not None and mapped.is_loopback) else "other"


def shown_url(url: str) -> str:
    """``url`` as it may appear in a message: no user or password (``***@``), no query, no fragment."""
    text = url.strip()
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest = "", text
    rest = rest.split("#", 1)[0].split("?", 1)[0]
    netloc, slash, path = rest.partition("/")
    if "@" in netloc:
        netloc = "***@" + netloc.rpartition("@")[2]
    return f"{scheme}{sep}{netloc}{slash}{path}"


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


def _rate_limit(extra: dict[str, Any], conn_id: str) -> int:
    """The extra's ``rate_limit``: a whole number of requests per minute, 0 for no budget."""
    value = extra.get("rate_limit", DEFAULT_LIMIT)
    try:
        limit = int(value)
    except (TypeError, ValueError):
        limit = -1
    if limit < 0 or isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise ValueError(f"connection {conn_id!r}: extra field 'rate_limit' must be a whole number >= 0, not {value!r}")
    return limit
