"""``openbell report`` tells a loss stop from an operator's halt and shows the extra loss budget granted."""

from __future__ import annotations

from datetime import datetime

from dates import SESSION as DAY
from openbell.report import build_report, render
from openbell.store.db import make_engine
from openbell.store.sessions import record_open_equity, set_risk


def _at(hhmm: str) -> datetime:
    return datetime.fromisoformat(f"2025-11-20T{hhmm}:00+00:00")


def test_the_report_says_who_set_the_risk_state_and_the_extra_loss_granted(state_url: str) -> None:
    engine = make_engine(state_url)
    try:
        record_open_equity(engine, DAY, 100_000.0)
        set_risk(engine, DAY, "HALTED", "daily loss 3.1%", "openbell", at=_at("18:00"), cause="loss_stop")
        report = build_report(engine, DAY)
        assert (report["risk"]["state"], report["risk"]["cause"]) == ("HALTED", "loss_stop")
        assert "risk state at the end: HALTED, set by the loss stop (openbell): daily loss 3.1%" in render(report)
        set_risk(engine, DAY, "ACTIVE", "reviewed", "alice", at=_at("18:30"), cause="operator", extra_loss=1_500.0)
        text = render(build_report(engine, DAY))
        assert "risk state at the end: ACTIVE, set by an operator (alice): reviewed; extra loss budget granted " \
               "today 1500.00" in text
        set_risk(engine, DAY, "REDUCING", "news", "bob", at=_at("19:00"), cause="operator")
        assert "risk state at the end: REDUCING, set by an operator (bob): news; extra loss budget granted today " \
               "1500.00" in render(build_report(engine, DAY))
    finally:
        engine.dispose()


def test_a_session_whose_risk_state_was_never_set_says_so(state_url: str) -> None:
    engine = make_engine(state_url)
    try:
        report = build_report(engine, DAY)
        assert report["risk"]["cause"] is None
        assert "risk state at the end: ACTIVE (never changed)" in render(report)
    finally:
        engine.dispose()
