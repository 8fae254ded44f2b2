"""Session phase and parameter-version helpers."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from sqlalchemy import Engine

from openbell.store.sessions import get_phase, get_session, set_phase
from openbell.store.versions import add_params, latest_params

DAY = date(2025, 3, 3)


def test_phase_moves_forward_and_keeps_times(engine: Engine) -> None:
    assert get_phase(engine, DAY) is None
    open_at = datetime(2025, 3, 3, 14, 30, tzinfo=UTC)
    close_at = datetime(2025, 3, 3, 21, 0, tzinfo=UTC)
    set_phase(engine, DAY, "pre_open", open_at=open_at, close_at=close_at)
    set_phase(engine, DAY, "trading")
    set_phase(engine, DAY, "liquidating")
    assert get_phase(engine, DAY) == "liquidating"
    session = get_session(engine, DAY)
    assert session is not None
    assert (session.open_at, session.close_at) == (open_at, close_at)
    with pytest.raises(ValueError, match="invalid session phase"):
        set_phase(engine, DAY, "lunch")
    assert get_phase(engine, DAY) == "liquidating"


def test_latest_params_is_the_newest_version_of_that_strategy(engine: Engine) -> None:
    assert latest_params(engine, "momentum") is None
    first = add_params(engine, "momentum", {"lookback": 20}, source="default")
    add_params(engine, "meanrev", {"z": 2.0}, source="default")
    newer = add_params(
        engine, "momentum", {"lookback": 35}, source="optimizer", session_date=DAY, score={"sharpe": 1.4}
    )
    latest = latest_params(engine, "momentum")
    assert latest is not None
    assert newer.id > first.id
    assert (latest.id, latest.params, latest.source, latest.score) == (
        newer.id,
        {"lookback": 35},
        "optimizer",
        {"sharpe": 1.4},
    )
    with pytest.raises(ValueError, match="invalid parameter source"):
        add_params(engine, "momentum", {"lookback": 1}, source="guess")
    assert latest_params(engine, "momentum").id == newer.id  # type: ignore[union-attr]
