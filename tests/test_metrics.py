"""Trading metrics reach a real StatsD receiver (a UDP socket on loopback) through Airflow's metrics settings."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from openbell import metrics
from openbell.metrics import SessionMetrics
from openbell.trading.attempt_report import AttemptReport

DAY = "2025-11-20"


@pytest.fixture
def receiver() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.2)
    try:
        yield sock
    finally:
        sock.close()


def _statsd(monkeypatch: pytest.MonkeyPatch, port: int, *, on: bool = True, host: str = "127.0.0.1") -> None:
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_ON", str(on))
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_HOST", host)
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_PORT", str(port))
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_PREFIX", "airflow")
    monkeypatch.setenv("AIRFLOW__METRICS__OTEL_ON", "False")
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_DATADOG_ENABLED", "False")
    metrics.configure()


def _received(sock: socket.socket, quiet: float = 0.5) -> list[str]:
    """Every StatsD line received until ``quiet`` seconds pass without one."""
    lines: list[str] = []
    deadline = time.monotonic() + quiet
    while time.monotonic() < deadline:
        try:
            data = sock.recv(65535)
        except TimeoutError:
            continue
        lines += data.decode().splitlines()
        deadline = time.monotonic() + quiet
    return lines


def _by_name(lines: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in lines:
        name, _, value = line.partition(":")
        out.setdefault(name, []).append(value)
    return out


@pytest.fixture(autouse=True)
def _reset_afterwards(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    yield
    monkeypatch.undo()
    metrics.configure()  # back to the environment's own settings


def test_minutes_and_session_end_arrive_over_udp(monkeypatch, receiver) -> None:
    _statsd(monkeypatch, receiver.getsockname()[1])
    report = AttemptReport(session_date=DAY, orders=3, fills=2, rejected=1, decisions=5, stream_restarts=1,
                           rejections_by_reason={"insufficient_buying_power": 1}, risk_state="ACTIVE")
    latencies, lateness = [12.5, 30.0], [0.25]
    m = SessionMetrics(DAY)
    m.minute(report, equity=100_000.5, latencies_ms=latencies, lateness_s=lateness)
    first = _by_name(_received(receiver))
    assert first["airflow.openbell.orders"] == ["3|c"]
    assert first["airflow.openbell.fills"] == ["2|c"]
    assert first["airflow.openbell.rejected"] == ["1|c"]
    assert first["airflow.openbell.rejections.insufficient_buying_power"] == ["1|c"]
    assert first["airflow.openbell.stream_restarts"] == ["1|c"]
    assert first["airflow.openbell.decisions"] == ["5|c"]
    assert [float(v.split("|")[0]) for v in first["airflow.openbell.bar_to_order"]] == [12.5, 30.0]
    assert all(v.endswith("|ms") for v in first["airflow.openbell.bar_to_order"])
    assert [float(v.split("|")[0]) for v in first["airflow.openbell.decision_lateness"]] == [250.0]
    assert first["airflow.openbell.equity"] == ["100000.5|g"]
    assert first["airflow.openbell.risk_state"] == ["0|g"]

    # the next minute: only what changed is counted; only the new samples are sent
    report.orders, report.fills, report.risk_state = 5, 2, "HALTED"
    report.rejections_by_reason["collar"] = 2
    latencies.append(7.0)
    m.minute(report, equity=99_000.0, latencies_ms=latencies, lateness_s=lateness)
    second = _by_name(_received(receiver))
    assert second["airflow.openbell.orders"] == ["2|c"]
    assert "airflow.openbell.fills" not in second
    assert second["airflow.openbell.rejections.collar"] == ["2|c"]
    assert "airflow.openbell.rejections.insufficient_buying_power" not in second
    assert [float(v.split("|")[0]) for v in second["airflow.openbell.bar_to_order"]] == [7.0]
    assert "airflow.openbell.decision_lateness" not in second
    assert second["airflow.openbell.risk_state"] == ["2|g"]

    report.fills, report.start_equity, report.end_equity = 4, 100_000.0, 99_250.25
    report.latency_p50_ms, report.latency_p99_ms, report.lateness_p50_s, report.lateness_p99_s = 12.5, 30.0, 0.25, 0.25
    m.session(report, latencies_ms=latencies, lateness_s=lateness)
    end = _by_name(_received(receiver))
    assert end["airflow.openbell.fills"] == ["2|c"]
    assert end["airflow.openbell.session.latency_p50_ms"] == ["12.5|g"]
    assert end["airflow.openbell.session.latency_p99_ms"] == ["30.0|g"]
    assert end["airflow.openbell.session.lateness_p99_s"] == ["0.25|g"]
    assert end["airflow.openbell.session.end_equity"] == ["99250.25|g"]
    assert end["airflow.openbell.session.pnl"] == ["0|g", "-749.75|g"]  # StatsD's way to set a negative gauge
    assert "airflow.openbell.bar_to_order" not in end
    assert m.failures == 0


def test_with_metrics_off_nothing_is_sent_and_nothing_fails(monkeypatch, receiver) -> None:
    _statsd(monkeypatch, receiver.getsockname()[1], on=False)
    report = AttemptReport(session_date=DAY, orders=3, fills=1, risk_state="REDUCING")
    m = SessionMetrics(DAY)
    m.minute(report, equity=1.0, latencies_ms=[1.0], lateness_s=[0.1])
    m.session(report)
    assert _received(receiver) == []
    assert m.failures == 0


def test_an_unresolvable_statsd_host_fails_nothing(monkeypatch, receiver) -> None:
    _statsd(monkeypatch, receiver.getsockname()[1], host="statsd.invalid")
    m = SessionMetrics(DAY)
    m.minute(AttemptReport(session_date=DAY, orders=1), equity=float("nan"))
    m.session(AttemptReport(session_date=DAY, orders=2))
    assert _received(receiver) == []


def test_a_report_that_cannot_be_read_is_counted_not_raised() -> None:
    m = SessionMetrics(DAY)
    m.minute(object())  # type: ignore[arg-type]
    assert m.failures == 1
