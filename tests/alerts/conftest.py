"""Fixtures: real local receivers for the alert channels (see ``alert_helpers``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from alert_helpers import HttpReceiver, SmtpReceiver


@pytest.fixture
def http_receiver() -> Iterator[HttpReceiver]:
    receiver = HttpReceiver()
    yield receiver
    receiver.close()


@pytest.fixture
def smtp_receiver() -> Iterator[SmtpReceiver]:
    receiver = SmtpReceiver()
    yield receiver
    receiver.close()
