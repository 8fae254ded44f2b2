"""Trading metrics through Airflow's metrics configuration (StatsD, Datadog or OpenTelemetry).

Sent with Airflow's ``Stats`` facade (``airflow.sdk.observability.stats``), so they go wherever the
``[metrics]`` section of the user's Airflow sends Airflow's own metrics (with its ``statsd_prefix``); with
metrics off nothing is sent. Every name starts with ``openbell.`` and carries a ``session`` tag (for the
backends that keep tags; plain StatsD keeps only the name).

:class:`SessionMetrics` is called between minutes (``minute``) and at the end of an attempt
(``session``); it turns the attempt's cumulative counts (:class:`~openbell.trading.attempt_report.AttemptReport`)
into counter increments and never raises.

Metrics, by kind:

- counters: ``openbell.orders``, ``openbell.fills``, ``openbell.rejected``, ``openbell.rejections.<reason>``,
  ``openbell.refused_by_limit.<limit>``, ``openbell.decisions``, ``openbell.stream_restarts``;
- timings (ms): ``openbell.bar_to_order`` (bar that completed a minute to its order handed to the sender),
  ``openbell.decision_lateness`` (a streamed minute's end to its decision, market time);
- gauges: ``openbell.equity``, ``openbell.risk_state`` (0 ``ACTIVE``, 1 ``REDUCING``, 2 ``HALTED``), and at
  the end ``openbell.session.latency_p50_ms``/``p99_ms``, ``openbell.session.lateness_p50_s``/``p99_s``,
  ``openbell.session.end_equity``, ``openbell.session.pnl``.
"""

from __future__ import annotations

import logging
import math
import os
import re
import threading
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from openbell.risk.state import LEVELS

log = logging.getLogger(__name__)

PREFIX = "openbell"
RISK_LEVELS = {str(state): level for state, level in LEVELS.items()}
COUNTERS = {"orders": "orders", "fills": "fills", "rejected": "rejected", "decisions": "decisions",
            "stream_restarts": "stream_restarts"}
BY_KIND = {"rejections_by_reason": "rejections", "orders_refused_by_limit": "refused_by_limit"}
MAX_SAMPLES = 200  # timing samples sent per call at most; older unsent ones are skipped
_NAME = re.compile(r"[^a-zA-Z0-9_-]+")

_configured_pid: int | None = None
_lock = threading.Lock()


class Report(Protocol):
    """What is read of a :class:`~openbell.trading.attempt_report.AttemptReport`."""

    session_date: str
    orders: int
    fills: int
    rejected: int
    decisions: int
    stream_restarts: int
    rejections_by_reason: dict[str, int]
    orders_refused_by_limit: dict[str, int]
    risk_state: str
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    lateness_p50_s: float | None
    lateness_p99_s: float | None
    start_equity: float | None
    end_equity: float | None


def configure() -> None:
    """(Re)build the facade's backend from Airflow's ``[metrics]`` configuration, in this process."""
    global _configured_pid
    from airflow.sdk.configuration import conf
    from airflow.sdk.observability import stats
    from airflow.sdk.observability.metrics import stats_utils

    with _lock:
        stats.initialize(factory=stats_utils.get_stats_factory(),
                         export_legacy_names=conf.getboolean("metrics", "legacy_names_on", fallback=True))
        _configured_pid = os.getpid()


def _stats() -> Any:
    if _configured_pid != os.getpid():
        configure()
    from airflow.sdk.observability import stats

    return stats


def _part(name: str) -> str:
    """A name as one segment of a metric name."""
    return _NAME.sub("_", str(name)).strip("_") or "unknown"


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


class SessionMetrics:
    """One attempt's metrics: counters as increments since the last call, new timing samples, gauges."""

    def __init__(self, session_date: str) -> None:
        self.tags = {"session": str(session_date)}
        self._sent: dict[str, int] = {}
        self._seen: dict[str, int] = {}  # timing series -> samples already sent
        self.failures = 0

    def minute(self, report: Report, *, equity: float | None = None,
               latencies_ms: Sequence[float] = (), lateness_s: Sequence[float] = ()) -> None:
        """Between minutes: counters, the new latency and lateness samples, equity and risk state."""
        try:
            stats = _stats()
            self._counters(stats, report)
            self._timings(stats, "bar_to_order", latencies_ms, 1.0)
            self._timings(stats, "decision_lateness", lateness_s, 1000.0)
            self._gauge(stats, "equity", equity)
            self._gauge(stats, "risk_state", RISK_LEVELS.get(report.risk_state))
        except Exception as exc:  # metrics never stop trading
            self._failed(exc)

    def session(self, report: Report, *, latencies_ms: Sequence[float] = (),
                lateness_s: Sequence[float] = ()) -> None:
        """At the end of the attempt: the last counts and samples, the risk state and the summary gauges."""
        try:
            stats = _stats()
            self._counters(stats, report)
            self._timings(stats, "bar_to_order", latencies_ms, 1.0)
            self._timings(stats, "decision_lateness", lateness_s, 1000.0)
            self._gauge(stats, "risk_state", RISK_LEVELS.get(report.risk_state))
            for field in ("latency_p50_ms", "latency_p99_ms", "lateness_p50_s", "lateness_p99_s", "end_equity"):
                self._gauge(stats, f"session.{field}", getattr(report, field, None))
            self._gauge(stats, "equity", report.end_equity)
            start, end = _number(report.start_equity), _number(report.end_equity)
            if start is not None and end is not None:
                self._gauge(stats, "session.pnl", round(end - start, 2))
        except Exception as exc:
            self._failed(exc)

    def _counters(self, stats: Any, report: Report) -> None:
        totals = {name: getattr(report, field, 0) for field, name in COUNTERS.items()}
        for field, group in BY_KIND.items():
            counts: Mapping[str, int] = getattr(report, field, None) or {}
            totals.update({f"{group}.{_part(kind)}": n for kind, n in counts.items()})
        for name, total in totals.items():
            count = int(total or 0)
            delta = count - self._sent.get(name, 0)
            if delta > 0:
                stats.incr(f"{PREFIX}.{name}", count=delta, tags=self.tags)
            self._sent[name] = max(count, self._sent.get(name, 0))

    def _timings(self, stats: Any, name: str, samples: Sequence[float], to_ms: float) -> None:
        end = len(samples)
        start = max(self._seen.get(name, 0), end - MAX_SAMPLES)
        for value in samples[start:end]:
            number = _number(value)
            if number is not None:
                stats.timing(f"{PREFIX}.{name}", max(0.0, number * to_ms), tags=self.tags)
        self._seen[name] = end

    def _gauge(self, stats: Any, name: str, value: Any) -> None:
        number = _number(value)
        if number is not None:
            stats.gauge(f"{PREFIX}.{name}", number, tags=self.tags)

    def _failed(self, exc: Exception) -> None:
        self.failures += 1
        if self.failures <= 3:
            log.warning("openbell metrics not sent: %s: %s", type(exc).__name__, exc)
