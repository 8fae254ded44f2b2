"""Order threads for the live loop: started and connected before the first bar, idle until an order.

Each thread owns a TradingClient whose keep-alive connection is opened at start, so the first
order of the day pays neither a thread start nor a TCP handshake. The clients resolve proxy and
CA settings from the environment once, at start, instead of on every request.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
from collections.abc import Callable
from typing import Any

import requests
from alpaca.trading.client import TradingClient

from openbell.alpaca import AlpacaConfig, error_message

log = logging.getLogger(__name__)

Job = Callable[[TradingClient], None]


class _OrderSession(requests.Session):
    """A session that reads proxy and CA settings from the environment once, when it is built,
    and gives every request a default timeout."""

    def __init__(self, base_url: str, timeout: float) -> None:
        super().__init__()
        self.default_timeout = timeout
        self.proxies.update(requests.utils.get_environ_proxies(base_url, no_proxy=None))
        bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
        if bundle:
            self.verify = bundle
        self.trust_env = False

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        kwargs.setdefault("timeout", self.default_timeout)
        return super().request(method, url, *args, **kwargs)

    def merge_environment_settings(  # type: ignore[override]
        self, url: str, proxies: dict[str, str] | None, stream: bool | None, verify: Any, cert: Any
    ) -> dict[str, Any]:
        """The session's settings under the request's own (the environment was read at start)."""
        merged = {k: v for k, v in {**self.proxies, **(proxies or {})}.items() if v is not None}
        return {
            "proxies": merged,
            "stream": self.stream if stream is None else stream,
            "verify": self.verify if verify is None else verify,
            "cert": self.cert if cert is None else cert,
        }


def order_client(config: AlpacaConfig) -> TradingClient:
    """A TradingClient for orders, on a session that does not rescan the environment per request."""
    client = config.trading_client()
    url = getattr(client, "_base_url", None)
    base = str(getattr(url, "value", url) or "https://paper-api.alpaca.markets")
    client._session = _OrderSession(base, config.timeout)  # type: ignore[attr-defined]
    return client


class OrderSender:
    """``threads`` workers running queued jobs ``fn(client)``, each with its own warm client."""

    def __init__(self, config: AlpacaConfig, threads: int, *, name: str = "openbell-orders") -> None:
        self.config = config
        self._q: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._ready = threading.Barrier(threads + 1)
        self._threads = [
            threading.Thread(target=self._run, name=f"{name}-{i}", daemon=True) for i in range(threads)
        ]

    def start(self, timeout: float = 10.0) -> None:
        """Start the threads and wait (up to ``timeout``) until each has connected."""
        for t in self._threads:
            t.start()
        try:
            self._ready.wait(timeout)
        except threading.BrokenBarrierError:
            log.warning("order threads not all connected within %.1fs; going on", timeout)

    def submit(self, job: Job) -> None:
        """Queue one job; a free thread runs it at once."""
        self._q.put(job)

    def close(self, timeout: float = 30.0) -> None:
        """Run what is queued, then stop the threads."""
        for _ in self._threads:
            self._q.put(None)
        for t in self._threads:
            if t.ident is not None:  # started
                t.join(timeout)

    def _run(self) -> None:
        client = order_client(self.config)
        try:
            client.get_clock()  # opens the keep-alive connection the orders will use
        except Exception as exc:
            log.warning("order thread warm-up failed: %s", error_message(exc))
        with contextlib.suppress(threading.BrokenBarrierError):
            self._ready.wait(10.0)
        while True:
            job = self._q.get()
            if job is None:
                return
            try:
                job(client)
            except Exception:  # a job reports its own failures; never lose the thread
                log.exception("order job failed")


