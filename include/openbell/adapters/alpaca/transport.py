"""The kept-open order connection: a lean HTTP session for alpaca-py's order client.

alpaca-py's ``TradingClient`` sends every request through ``self._session.request(method, url,
headers=..., json=... | params=..., allow_redirects=False)`` and reads ``status_code``, ``text``,
``json()`` and ``raise_for_status()`` of the answer. :class:`OrderSession` answers that call from
one kept-open ``http.client`` connection: requests' per-call preparation (hooks, cookies, proxy and
CA resolution, adapters) costs several times the CPU of the request itself, and an order waits for
that CPU. The client still builds the request and parses the answer; anything unusual (a proxy in
the environment, another origin, redirects to follow, extra options) goes through plain requests.

Every request on it is an order's (a submit, its lookups): it takes an order slot of the key's request
budget, and a 429 (which the broker answers before it looks at the order, so nothing was placed) is
waited out as its headers say and sent once more, under the same ``client_order_id``; a second 429
reaches the caller (:func:`openbell.adapters.alpaca.broker.submit` asks the broker before sending again).
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import select
import ssl
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode, urlsplit

import requests
from alpaca.trading.client import TradingClient
from requests.structures import CaseInsensitiveDict
from requests.utils import get_encoding_from_headers, get_environ_proxies

from openbell.adapters.alpaca.budget import MAX_WAIT_SECONDS, ORDER, WindowBudget
from openbell.adapters.alpaca.config import PAPER_TRADING_URL, AlpacaConfig
from openbell.adapters.alpaca.retry import wait_after_429
from openbell.ports import Deadline, DeadlinePassed

log = logging.getLogger(__name__)

# After a 429 whose headers name no wait (no Retry-After, requests left in the window): this long, at most.
RATE_LIMITED_BACKOFF = 0.5

_PLAIN = {"headers", "params", "json", "allow_redirects", "timeout"}


class OrderSession(requests.Session):
    """A ``requests.Session`` whose calls to ``base_url`` share one kept-open connection.

    Failures surface as requests' own exceptions (``ConnectionError``, ``Timeout``), so callers
    retry them as before. A connection the server closed while idle is replaced before it is used.
    With a ``budget``, every request takes an order slot first and a 429 is sent once more after its wait.
    """

    def __init__(self, base_url: str, timeout: float, budget: WindowBudget | None = None) -> None:
        super().__init__()
        self.default_timeout = timeout
        self.budget = budget
        parts = urlsplit(base_url)
        self._https = parts.scheme == "https"
        self._origin = f"{parts.scheme}://{parts.netloc}"
        self._host = parts.hostname or ""
        self._port = parts.port or (443 if self._https else 80)
        self._direct = parts.scheme in ("http", "https") and not get_environ_proxies(base_url, no_proxy=None)
        self._context: ssl.SSLContext | None = None
        if self._https:
            bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
            self._context = ssl.create_default_context(cafile=bundle or requests.certs.where())
        self._conn: http.client.HTTPConnection | None = None
        self.deadline: Deadline | None = None  # an order's: no POST starts, nor waits for the budget, past it

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        kwargs.setdefault("timeout", self.default_timeout)
        plain = not args and not set(kwargs) - _PLAIN and kwargs.get("allow_redirects") is False
        verb = (method.decode() if isinstance(method, bytes) else method).upper()
        target = url.decode() if isinstance(url, bytes) else url
        if plain and self._direct and target.startswith(self._origin + "/"):
            return self._limited(verb, target, lambda: self._send(verb, target, kwargs))
        return self._limited(verb, target, lambda: super(OrderSession, self).request(method, url, *args, **kwargs))

    def close(self) -> None:
        self._drop()
        super().close()

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        conn = self._conn
        if conn is not None and conn.sock is not None:
            readable, _, _ = select.select([conn.sock], [], [], 0)
            if readable:  # closed by the server (or unread bytes): never reuse it
                self._drop()
                conn = None
        if conn is None:
            if self._https:
                conn = http.client.HTTPSConnection(self._host, self._port, timeout=timeout, context=self._context)
            else:
                conn = http.client.HTTPConnection(self._host, self._port, timeout=timeout)
            self._conn = conn
        conn.timeout = timeout
        if conn.sock is not None:
            conn.sock.settimeout(timeout)
        return conn

    def _limited(self, method: str, url: str, send: Callable[[], requests.Response]) -> requests.Response:
        """``send`` within the budget; a 429 waited out and sent once more."""
        budget = self.budget
        deadline = self.deadline if method == "POST" else None
        self._take(budget, deadline)
        response = send()
        if response.status_code != 429:
            return response
        cap = MAX_WAIT_SECONDS if budget is None else budget.wait_cap()
        wait = wait_after_429(response.headers, cap)
        log.warning("%s %s: 429, sending once more in %.2fs", method, url.split("?")[0],
                    wait or min(RATE_LIMITED_BACKOFF, cap))
        if not wait or budget is None:  # a window ends for every process; other 429s only for this one
            _within(deadline, wait or min(RATE_LIMITED_BACKOFF, cap))
            time.sleep(wait or min(RATE_LIMITED_BACKOFF, cap))
        else:
            budget.block(wait)
        self._take(budget, deadline)
        return send()

    @staticmethod
    def _take(budget: WindowBudget | None, deadline: Deadline | None) -> None:
        """A slot of the budget, waited for no later than ``deadline`` (:class:`DeadlinePassed` instead)."""
        _within(deadline, 0.0)
        if budget is None:
            return
        if deadline is None:
            budget.acquire(ORDER)
            return
        while (wait := budget.try_acquire(ORDER)) > 0:
            _within(deadline, wait)
            time.sleep(wait)


    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _send(self, method: str, url: str, kwargs: dict[str, Any]) -> requests.Response:
        path = url[len(self._origin) :]
        params = kwargs.get("params")
        if params:
            query = params if isinstance(params, str) else urlencode(params, doseq=True)
            path += ("&" if "?" in path else "?") + query
        headers = {"Accept": "*/*", "Accept-Encoding": "identity", **(kwargs.get("headers") or {})}
        body = None
        if kwargs.get("json") is not None:
            body = json.dumps(kwargs["json"]).encode()
            headers["Content-Type"] = "application/json"
        elif method in ("POST", "PUT", "PATCH"):
            body = b""
        timeout = kwargs["timeout"]
        try:
            conn = self._connection(timeout if isinstance(timeout, int | float) else self.default_timeout)
            conn.request(method, path, body, headers)
            answer = conn.getresponse()
            content = answer.read()
        except TimeoutError as exc:
            self._drop()
            raise requests.Timeout(f"{method} {url}: {exc or 'timed out'}") from exc
        except (OSError, http.client.HTTPException) as exc:
            self._drop()
            raise requests.ConnectionError(f"{method} {url}: {exc!r}") from exc
        if answer.will_close:
            self._drop()
        response = requests.Response()
        response.status_code = answer.status
        response.reason = answer.reason
        response.headers = CaseInsensitiveDict(answer.getheaders())
        response.encoding = get_encoding_from_headers(response.headers)
        response._content = content
        response.url = url
        return response


def order_client(config: AlpacaConfig) -> TradingClient:
    """A TradingClient for orders, on one kept-open connection (:class:`OrderSession`) drawing on the key's
    request budget."""
    client = config.trading_client()
    url = getattr(client, "_base_url", None)
    base = str(getattr(url, "value", url) or PAPER_TRADING_URL)
    client._session = OrderSession(base, config.timeout, config.rate_budget())  # type: ignore[attr-defined]
    return client


def _within(deadline: Deadline | None, wait: float) -> None:
    """Raise :class:`DeadlinePassed` unless waiting ``wait`` wall seconds still ends before ``deadline``."""
    if deadline is not None and (why := deadline.refusal(wait)) is not None:
        raise DeadlinePassed(why)
