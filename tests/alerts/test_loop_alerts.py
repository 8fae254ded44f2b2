"""The live loop's own alerts (refusals piling up, a silent bar stream), to a real local receiver."""

from __future__ import annotations

from datetime import date

import pytest
from alert_helpers import CONN_ENV, HttpReceiver, connection

from openbell.session.alerting import REJECTIONS_ALERT, LoopAlerts
from openbell.session.report import SessionReport
from openbell.store.db import make_engine

DAY = date(2025, 11, 20)


def test_refusals_piling_up_and_a_silent_stream_alert_once_each(state_url: str, http_receiver: HttpReceiver,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CONN_ENV, connection(http_receiver.url))
    alerts = LoopAlerts(DAY, make_engine(state_url))
    report = SessionReport(session_date=DAY.isoformat(), rejected=REJECTIONS_ALERT - 1)
    alerts.check(report)
    assert http_receiver.received == []  # below the line: nothing
    report.rejected, report.rejections_by_reason = REJECTIONS_ALERT, {"buying_power": REJECTIONS_ALERT}
    for _ in range(3):  # every later minute: still one alert
        alerts.check(report)
    report.stream_restarts = 1
    alerts.check(report)
    alerts.check(report)
    titles = [m["title"] for m in http_receiver.received]
    assert titles == [f"openbell {DAY}: {REJECTIONS_ALERT} orders refused by the broker",
                      f"openbell {DAY}: the bar stream went silent"]
    assert "buying_power 5" in http_receiver.received[0]["message"]
    # another attempt of the same session (a new LoopAlerts) does not send them again
    LoopAlerts(DAY, make_engine(state_url)).check(report)
    assert len(http_receiver.received) == 2
