"""The Trading API's request limit: ``limit`` requests per market minute per API key.

Alpaca counts per minute; a rehearsal plays the market ``speed`` times faster, so the window is one market
minute (60 / speed wall seconds) and a client meets the same budget per market minute as it would live. A
key's window opens with its first request; past ``limit`` requests in it, requests are
answered 429 until it ends. Every Trading API answer carries ``X-RateLimit-Limit``,
``X-RateLimit-Remaining`` and ``X-RateLimit-Reset`` (the window's end, Unix seconds). Market data
(``/v2/stocks/...``), the streams and ``/sim/...`` are not limited.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

WINDOW_SECONDS = 60.0
DEFAULT_LIMIT = 200
UNLIMITED_PREFIXES = ("/v2/stocks/",)


def is_trading_path(path: str, stream_paths: tuple[str, ...]) -> bool:
    """True for a Trading API path (counted against the limit)."""
    return path.startswith("/v2/") and path not in stream_paths and not path.startswith(UNLIMITED_PREFIXES)


@dataclass
class RateLimiter:
    """Fixed one-minute windows per key, with counters (``peak``: the most requests seen in one window).
    ``window`` is the minute's length in wall seconds."""

    limit: int = DEFAULT_LIMIT
    window: float = WINDOW_SECONDS
    windows: dict[str, tuple[float, int]] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=lambda: {"requests": 0, "limited": 0, "peak": 0})

    def hit(self, key: str, now: float | None = None) -> tuple[bool, dict[str, str]]:
        """Count one request of ``key``: (allowed, the X-RateLimit-* headers to answer with)."""
        now = time.time() if now is None else now
        start, used = self.windows.get(key, (now, 0))
        if now >= start + self.window:
            start, used = now, 0
        used += 1
        self.windows[key] = (start, used)
        self.counters["requests"] += 1
        self.counters["peak"] = max(self.counters["peak"], used)
        allowed = used <= self.limit
        if not allowed:
            self.counters["limited"] += 1
        headers = {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(max(0, self.limit - used)),
            "X-RateLimit-Reset": str(math.ceil(start + self.window)),
        }
        return allowed, headers
