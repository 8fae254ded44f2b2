"""The report tells each attempt's story: how it ended and what it recovered."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine, text

from dates import SESSION as DAY
from openbell.alerts.summary import summary_text
from openbell.broker import book
from openbell.broker.journal import event
from openbell.report import build_report, render
from openbell.store.db import make_engine
from openbell.store.ledger import ABANDONED, step
from openbell.store.sessions import set_risk
from openbell.store.versions import add_params


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


def _session_in_utc(engine: Engine) -> None:
    """A day whose market times are stored in UTC, as the live loop stores them: defaults until v1 comes,
    two orders (one filled), a halt and its resumption, the loss stop and an operator's resume, steps
    stamped with their market time."""
    at = lambda hhmm: datetime.fromisoformat(f"2025-11-20T{hhmm}:00+00:00")  # noqa: E731
    version = add_params(engine, "momentum", {"lookback": 20}, source="optimizer", session_date=DAY)
    with engine.begin() as conn:
        for seq, (ts, vid) in enumerate([("14:31", None), ("14:32", None), ("19:33", version.id),
                                         ("19:34", version.id), ("19:35", version.id)], 1):
            conn.execute(text("INSERT INTO decisions (session_date, seq, ts, targets, param_version_id)"
                              " VALUES (:d, :seq, :ts, '{}', :vid)"), {"d": DAY, "seq": seq, "ts": at(ts), "vid": vid})
        book.upsert_order(conn, book.OrderRow(client_order_id="ob-1-AAPL-buy", session_date=DAY, symbol="AAPL",
                                              side="buy", qty=10, status="filled", decision_seq=1))
        book.upsert_order(conn, book.OrderRow(client_order_id="ob-4-SSO-sell", session_date=DAY, symbol="SSO",
                                              side="sell", qty=5, status="rejected", decision_seq=4))
        book.insert_fill(conn, execution_id="x1", client_order_id="ob-1-AAPL-buy", session_date=DAY, symbol="AAPL",
                         side="buy", qty=10, price=100.0, ts=datetime.fromisoformat("2025-11-20T14:32:07+00:00"))
    for change, hhmm in (("halted", "17:00"), ("resumed", "17:05")):
        event(engine, DAY, f"symbol_{change}", {"symbol": "SSO", "change": change, "code": "H",
                                                "reason": "", "market_time": at(hhmm).isoformat()})
    set_risk(engine, DAY, "REDUCING", "daily loss limit: equity 97000.00 vs 100000.00 at the open", "openbell",
             at=at("19:36"), cause="loss_stop")
    set_risk(engine, DAY, "ACTIVE", "looked at it", "alice", at=at("20:01"), cause="operator")
    with step(engine, DAY, "wait_for_open") as record:
        record.summary["market_time"] = at("14:30").isoformat()


def test_every_time_is_new_york_time_and_marked(state_url: str) -> None:
    engine = make_engine(state_url)
    _session_in_utc(engine)
    text_ = render(build_report(engine, DAY))
    assert "v1 from 14:33 ET (3 decisions)" in text_
    assert "SSO halted 12:00 ET" in text_ and "SSO resumed 12:05 ET" in text_
    assert "14:36 ET  ACTIVE -> REDUCING by openbell (loss stop): daily loss limit" in text_
    assert "15:01 ET  REDUCING -> ACTIVE by alice: looked at it" in text_
    assert "09:32 ET  ob-1-AAPL-buy" in text_  # its fill
    assert "14:34 ET  ob-4-SSO-sell" in text_  # the minute that decided it
    assert "wait_for_open" in text_ and "at 09:30 ET" in text_
    for utc in ("19:33", "17:00", "17:05", "19:36", "20:01", "14:32 "):
        assert utc not in text_, utc


def test_decisions_on_the_strategys_defaults_are_listed_as_defaults(state_url: str) -> None:
    engine = make_engine(state_url)
    _session_in_utc(engine)
    report = build_report(engine, DAY)
    assert "parameter versions used: defaults from 09:31 ET (2 decisions), v1 from 14:33 ET (3 decisions)" \
        in render(report)
    _, body = summary_text(report)
    assert "Parameter version: defaults, v1" in body


def test_a_notional_order_is_listed_by_its_dollars(state_url: str) -> None:
    """Alpaca says no qty for a notional order: the report lists its dollars, not a share count it never had."""
    engine = make_engine(state_url)
    with engine.begin() as conn:
        book.upsert_order(conn, book.OrderRow(client_order_id="ob-2-SSO-buy", session_date=DAY, symbol="SSO",
                                              side="buy", qty=None, notional=1250.5, status="new"))
        book.upsert_order(conn, book.OrderRow(client_order_id="ob-3-QQQ-buy", session_date=DAY, symbol="QQQ",
                                              side="buy", qty=3, status="filled"))
    lines = render(build_report(engine, DAY)).splitlines()
    [notional] = [line for line in lines if "ob-2-SSO-buy" in line]
    [shares] = [line for line in lines if "ob-3-QQQ-buy" in line]
    assert "$1,250.50 SSO" in notional and "0.00" not in notional
    assert " 3.00 QQQ" in shares
