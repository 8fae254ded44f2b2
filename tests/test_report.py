"""The report tells each attempt's story: how it ended and what it recovered."""

from __future__ import annotations

from datetime import date

from openbell.report import build_report, render
from openbell.store.db import make_engine
from openbell.store.ledger import ABANDONED, step

DAY = date(2025, 11, 20)


def test_a_killed_attempt_and_what_the_retry_recovered(state_url: str) -> None:
    engine = make_engine(state_url)
    killed = step(engine, DAY, "live_trading", attempt=1)
    killed.__enter__()  # the process dies here: the attempt never exits
    with step(engine, DAY, "live_trading", attempt=2) as record:
        record.summary.update({"refilled_bars": 84, "reconnects": 0,
                               "reconcile": {"orders_found": 3, "positions_adopted": 1, "differences": 0}})
    report = build_report(engine, DAY)
    [trading] = [s for s in report["steps"] if s["step"] == "live_trading"]
    assert (trading["status"], trading["attempts"]) == ("success", 2)
    first, second = trading["history"]
    assert (first["status"], first["error"], first["recovered"]) == ("failed", ABANDONED, {})
    assert second["recovered"] == {"abandoned_attempts": [1], "positions_adopted": 1, "orders_found": 3,
                                   "refilled_bars": 84}
    text = render(report)
    assert "attempt 1: failed  " + ABANDONED in text
    assert "attempt 2: success  recovered: abandoned_attempts=[1], positions_adopted=1, orders_found=3" in text


def test_a_session_with_no_data_reports_empty(state_url: str) -> None:
    report = build_report(make_engine(state_url), DAY)
    assert report["steps"] == [] and report["orders"] == [] and report["fills"] == []
    assert "openbell report for session 2025-11-20" in render(report)
