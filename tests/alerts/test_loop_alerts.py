"""The live loop's own alerts (refusals piling up, a silent bar stream, the loss stop), to a real local
receiver: every new occurrence alerts, the same occurrence seen again (a later minute, a retried
attempt) does not."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from alert_helpers import CONN_ENV, HttpReceiver, connection
from sqlalchemy import Engine

from dates import SESSION as DAY
from dates import the_session
from openbell.broker.journal import event
from openbell.policy import OrderLimits
from openbell.risk.gate import SendGate
from openbell.risk.owner import RiskOwner
from openbell.store.db import make_engine
from openbell.store.sessions import get_risk, set_risk
from openbell.strategy import RiskGate, RiskLimits
from openbell.trading.alerting import REJECTIONS_ALERT, LoopAlerts
from openbell.trading.attempt_report import AttemptReport
from openbell.trading.context import LoopContext
from openbell.trading.risklink import RiskLink

OPEN = datetime(2025, 11, 20, 14, 30, tzinfo=UTC)  # 09:30 ET


def _titles(receiver: HttpReceiver) -> list[str]:
    return [m["title"] for m in receiver.received]


def _refused(engine: Engine, report: AttemptReport, n: int, reason: str = "buying_power") -> None:
    """``n`` refusals by the broker, counted and journaled as the live loop's dispatcher does."""
    for _ in range(n):
        report.rejected += 1
        report.rejections_by_reason[reason] = report.rejections_by_reason.get(reason, 0) + 1
        event(engine, DAY, "order_rejected", {"client_order_id": "x", "outcome": "rejected", "reason": "no",
                                              "http_status": 403, "code": 40310000, "refusal": reason})


def _restart(engine: Engine, report: AttemptReport, last_bar_end: datetime, at: datetime) -> None:
    """A restart of a silent bar stream, counted and journaled as the live loop's stream watch does."""
    report.stream_restarts += 1
    event(engine, DAY, "stream_restart", {"last_bar_end": last_bar_end, "market_time": at})


def test_refusals_below_the_line_send_nothing_and_each_line_crossed_alerts_once(
        state_url: str, http_receiver: HttpReceiver, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CONN_ENV, connection(http_receiver.url))
    engine = make_engine(state_url)
    alerts = LoopAlerts(DAY, engine)
    report = AttemptReport(session_date=DAY.isoformat())
    _refused(engine, report, REJECTIONS_ALERT - 1)
    alerts.check(report)
    assert http_receiver.received == []  # below the line: nothing
    _refused(engine, report, 1)
    for _ in range(3):  # every later minute: still one alert
        alerts.check(report)
    assert _titles(http_receiver) == [f"openbell {DAY}: 5 orders refused by the broker"]
    assert "buying_power 5" in http_receiver.received[0]["message"]
    assert "at 10" in http_receiver.received[0]["message"]  # says when it alerts again
    _refused(engine, report, 4)
    alerts.check(report)
    assert len(http_receiver.received) == 1  # 9: not yet
    _refused(engine, report, 1, "wash_trade")
    alerts.check(report)
    alerts.check(report)
    _refused(engine, report, 9)
    alerts.check(report)  # 19
    _refused(engine, report, 2)
    alerts.check(report)  # 21
    assert _titles(http_receiver) == [f"openbell {DAY}: {n} orders refused by the broker" for n in (5, 10, 21)]
    assert "buying_power 9, wash_trade 1" in http_receiver.received[1]["message"]


def test_a_retried_attempt_does_not_resend_the_days_refusal_alerts_but_adds_to_their_count(
        state_url: str, http_receiver: HttpReceiver, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CONN_ENV, connection(http_receiver.url))
    engine = make_engine(state_url)
    first = AttemptReport(session_date=DAY.isoformat())
    _refused(engine, first, 7)
    LoopAlerts(DAY, engine).check(first)
    assert _titles(http_receiver) == [f"openbell {DAY}: 7 orders refused by the broker"]
    # the attempt dies; its retry counts its own refusals, the journal holds the day's
    retry, alerts = AttemptReport(session_date=DAY.isoformat()), LoopAlerts(DAY, engine)
    _refused(engine, retry, 1)
    alerts.check(retry)
    assert len(http_receiver.received) == 1  # 8 today: the alert at 5 went out already
    _refused(engine, retry, 2)
    alerts.check(retry)
    assert _titles(http_receiver)[1:] == [f"openbell {DAY}: 10 orders refused by the broker"]
    LoopAlerts(DAY, engine).check(retry)  # a third attempt: the same 10 refusals, no new alert
    assert len(http_receiver.received) == 2


def test_each_silence_of_the_bar_stream_alerts_and_a_long_one_reminds_at_2_4_8_restarts(
        state_url: str, http_receiver: HttpReceiver, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CONN_ENV, connection(http_receiver.url))
    engine = make_engine(state_url)
    alerts = LoopAlerts(DAY, engine)
    report = AttemptReport(session_date=DAY.isoformat())
    alerts.check(report)
    assert http_receiver.received == []
    since = OPEN + timedelta(minutes=61)  # 10:31 ET: the last streamed minute's end
    at = since + timedelta(minutes=3)
    _restart(engine, report, since, at)
    alerts.check(report)
    alerts.check(report)
    for _ in range(4):  # still silent: restarted every 3 minutes, 5 restarts in all
        _restart(engine, report, at, at + timedelta(minutes=3))
        at += timedelta(minutes=3)
        alerts.check(report)
    assert _titles(http_receiver) == [
        f"openbell {DAY}: the bar stream went silent (no bar since 10:31 ET)",
        f"openbell {DAY}: the bar stream still silent since 10:31 ET (2 restarts)",
        f"openbell {DAY}: the bar stream still silent since 10:31 ET (4 restarts)",
    ]
    assert "restarted at 10:34 ET" in http_receiver.received[0]["message"]
    # bars flow again, then a new silence later in the day: a new alert
    since = OPEN + timedelta(hours=4)  # 13:30 ET
    _restart(engine, report, since, since + timedelta(minutes=3))
    alerts.check(report)
    assert _titles(http_receiver)[3:] == [f"openbell {DAY}: the bar stream went silent (no bar since 13:30 ET)"]
    assert "restart 6 today" in http_receiver.received[3]["message"]


def test_a_retried_attempt_does_not_resend_a_silence_but_alerts_its_own(
        state_url: str, http_receiver: HttpReceiver, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CONN_ENV, connection(http_receiver.url))
    engine = make_engine(state_url)
    first = AttemptReport(session_date=DAY.isoformat())
    since = OPEN + timedelta(minutes=60)
    _restart(engine, first, since, since + timedelta(minutes=3))
    LoopAlerts(DAY, engine).check(first)
    assert len(http_receiver.received) == 1
    LoopAlerts(DAY, engine).check(first)  # the same restart seen by another attempt: not again
    assert len(http_receiver.received) == 1
    retry, alerts = AttemptReport(session_date=DAY.isoformat()), LoopAlerts(DAY, engine)
    alerts.check(retry)
    since = OPEN + timedelta(minutes=90)  # the retry's own stream goes silent: its first restart alerts
    _restart(engine, retry, since, since + timedelta(minutes=3))
    alerts.check(retry)
    assert _titles(http_receiver) == [f"openbell {DAY}: the bar stream went silent (no bar since {t} ET)"
                                      for t in ("10:30", "11:00")]


def test_a_journal_written_late_still_alerts_the_restart(state_url: str, http_receiver: HttpReceiver,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CONN_ENV, connection(http_receiver.url))
    engine = make_engine(state_url)
    alerts = LoopAlerts(DAY, engine)
    report = AttemptReport(session_date=DAY.isoformat(), stream_restarts=1)  # counted, not yet journaled
    alerts.check(report)
    assert http_receiver.received == []
    event(engine, DAY, "stream_restart", {"last_bar_end": OPEN, "market_time": OPEN + timedelta(minutes=3)})
    alerts.check(report)
    assert _titles(http_receiver) == [f"openbell {DAY}: the bar stream went silent (no bar since 09:30 ET)"]


def _store_halt(engine: Engine, reason: str, at: datetime) -> None:
    """``RiskLink.store_halt`` as the live loop calls it on its helper pool when the loss stop trips (on a link
    with only what storing and alerting use: the session and the state database)."""
    ctx = LoopContext(the_session(DAY), (), None, None, None, AttemptReport(DAY.isoformat()))  # type: ignore[arg-type]
    risk = RiskOwner(RiskGate(RiskLimits()))
    link = RiskLink(ctx, risk, SendGate(risk, OrderLimits(), trade_until=at), engine)
    link.store_halt(reason, at)


def test_a_second_loss_stop_after_a_resume_alerts_again(state_url: str, http_receiver: HttpReceiver,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CONN_ENV, connection(http_receiver.url))
    engine = make_engine(state_url)
    first = OPEN + timedelta(hours=1, minutes=3, seconds=12)  # 10:33:12 ET
    _store_halt(engine, "daily loss limit: equity 97000.00 vs 100000.00 at the open", first)
    _store_halt(engine, "daily loss limit: equity 97000.00 vs 100000.00 at the open", first)  # the same, again
    assert get_risk(engine, DAY).state != "ACTIVE"
    stopped = "trading stopped: closing every position, then HALTED"
    assert _titles(http_receiver) == [f"openbell {DAY}: loss stop at 10:33 ET, {stopped}"]
    set_risk(engine, DAY, "ACTIVE", "looked at it, go on", "operator", at=first + timedelta(minutes=20))
    second = OPEN + timedelta(hours=4, minutes=3)  # 13:33 ET
    _store_halt(engine, "daily loss limit: equity 96000.00 vs 97000.00 at the resume", second)
    assert _titles(http_receiver) == [f"openbell {DAY}: loss stop at {t} ET, {stopped}" for t in ("10:33", "13:33")]
    assert "96000.00" in http_receiver.received[1]["message"]
