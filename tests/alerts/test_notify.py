"""``alert()``: the ``openbell_notify`` connection, sent once per kind and key, never raising."""

from __future__ import annotations

import logging

import pytest
from airflow.sdk.log import redact
from alert_helpers import CONN_ENV, HttpReceiver, SmtpReceiver, connection, free_port
from sqlalchemy import text

from dates import SESSION as DAY
from openbell.alerts.notify import EVENT_FAILED, EVENT_SENT, ChannelError, Outcome, alert, check_channel
from openbell.store.db import make_engine


def _journal(state_url: str) -> list[tuple[str, str, str]]:
    with make_engine(state_url).connect() as conn:
        rows = conn.execute(text("SELECT kind, payload->>'kind', payload->>'key' FROM events ORDER BY id"))
        return [tuple(r) for r in rows]


def test_no_connection_sends_nothing(state_url: str, http_receiver: HttpReceiver,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CONN_ENV, raising=False)
    outcome = alert("step_failed", "k", "title", "body", session_date=DAY, engine=make_engine(state_url))
    assert outcome is Outcome.OFF
    assert http_receiver.received == [] and _journal(state_url) == []
    assert "alerts off" in check_channel()


def test_the_same_event_three_times_sends_one_alert(state_url: str, http_receiver: HttpReceiver,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CONN_ENV, connection(http_receiver.url))
    engine = make_engine(state_url)
    outcomes = [alert("step_failed", "run/x", "x failed", "boom", session_date=DAY, engine=engine) for _ in range(3)]
    assert outcomes == [Outcome.SENT, Outcome.DUPLICATE, Outcome.DUPLICATE]
    assert [(m["title"], m["message"], m["type"]) for m in http_receiver.received] == [("x failed", "boom", "failure")]
    # another key, or another kind with the same key, is another alert
    assert alert("step_failed", "run/y", "y failed", "boom", session_date=DAY, engine=engine) is Outcome.SENT
    assert alert("not_flat", "run/x", "not flat", "AAPL 3", session_date=DAY, engine=engine) is Outcome.SENT
    assert len(http_receiver.received) == 3
    assert _journal(state_url) == [(EVENT_SENT, "step_failed", "run/x"), (EVENT_SENT, "step_failed", "run/y"),
                                   (EVENT_SENT, "not_flat", "run/x")]


def test_a_dead_channel_never_raises_and_a_later_delivery_is_sent(
        state_url: str, http_receiver: HttpReceiver, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    engine = make_engine(state_url)
    token = "Zq7-webhook-token"
    monkeypatch.setenv(CONN_ENV, connection(f"json://127.0.0.1:{free_port()}/{token}"))
    with caplog.at_level(logging.INFO):
        assert alert("step_failed", "run/x", "x failed", "boom", session_date=DAY, engine=engine) is Outcome.FAILED
    assert token not in caplog.text
    assert token not in redact(f"GET /{token}")  # Airflow's log masking knows the URL's parts
    assert _journal(state_url) == [(EVENT_FAILED, "step_failed", "run/x")]
    # the channel is back: the event that was never delivered is sent now, once
    monkeypatch.setenv(CONN_ENV, connection(http_receiver.url))
    assert alert("step_failed", "run/x", "x failed", "boom", session_date=DAY, engine=engine) is Outcome.SENT
    assert alert("step_failed", "run/x", "x failed", "boom", session_date=DAY, engine=engine) is Outcome.DUPLICATE
    assert len(http_receiver.received) == 1


def test_without_the_state_database_it_still_sends(http_receiver: HttpReceiver,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CONN_ENV, connection(http_receiver.url))
    assert alert("step_failed", "k", "t", "b", session_date=DAY) is Outcome.SENT
    assert len(http_receiver.received) == 1


def test_mail_through_a_local_smtp_server(state_url: str, smtp_receiver: SmtpReceiver,
                                          http_receiver: HttpReceiver, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CONN_ENV, connection(smtp_receiver.url, http_receiver.url))
    engine = make_engine(state_url)
    for _ in range(2):
        alert("not_flat", "run", "account NOT flat", "AAPL 3 left", session_date=DAY, engine=engine)
    [mail] = smtp_receiver.messages
    assert mail["Subject"] == "account NOT flat" and mail["To"] == "operator@example.com"
    assert "AAPL 3 left" in mail.get_body(("plain", "html")).get_content()
    assert len(http_receiver.received) == 1


@pytest.mark.parametrize(("conn", "message"), [
    ('{"conn_type": "apprise", "extra": {"config": {"path": "nosuchscheme://x"}}}', "does not parse"),
    ('{"conn_type": "apprise", "extra": {}}', 'needs a "config" extra'),
    ('{"conn_type": "apprise", "extra": {"config": {"url": "json://127.0.0.1/"}}}', 'needs a "config" extra'),
    ('{"conn_type": "http", "host": "example.com"}', "not 'apprise'"),
])
def test_a_bad_connection_is_refused_clearly_and_never_raises_into_a_step(
        conn: str, message: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CONN_ENV, conn)
    with pytest.raises(ChannelError, match=message):
        check_channel()
    assert alert("step_failed", "k", "t", "b", session_date=DAY) is Outcome.FAILED
