"""One session's state for the Trading view, read from Postgres (live or past, the same query)."""

from __future__ import annotations

import math
import re
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine, text

from openbell.calendar import ET
from openbell.params import DEFAULT_UNIVERSE
from openbell.report import build_report
from openbell.store.sessions import get_risk

ROW_LIMIT = 300  # orders, fills and events sent in a snapshot (the newest ones)
HEALTH_KINDS = ("stream_restart", "refill", "refill_failed", "live_session_end")

# Row notifications carry a key; these fetch a row by it when the notification left the row out.
ROW_QUERIES: dict[str, str] = {
    "orders": "SELECT * FROM orders WHERE client_order_id = :client_order_id",
    "fills": "SELECT * FROM fills WHERE execution_id = :execution_id",
    "positions": "SELECT * FROM positions WHERE session_date = :session_date AND symbol = :symbol",
    "equity": "SELECT * FROM equity WHERE session_date = :session_date AND ts = :ts",
    "signals": "SELECT * FROM signals WHERE session_date = :session_date AND ts = :ts AND symbol = :symbol",
    "decisions": "SELECT * FROM decisions WHERE session_date = :session_date AND seq = :seq",
    "param_versions": "SELECT * FROM param_versions WHERE id = :id",
    "step_runs": "SELECT * FROM step_runs WHERE id = :id",
    "trading_sessions": "SELECT * FROM trading_sessions WHERE session_date = :session_date",
    "events": "SELECT * FROM events WHERE id = :id",
}


def plain(value: Any) -> Any:
    """``value`` as JSON-ready data: dates as ISO text, Decimal as float, NaN and infinities as None."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, Decimal | float):
        number = float(value)
        return number if math.isfinite(number) else None
    if isinstance(value, datetime | date):
        return value.isoformat()
    if value is None or isinstance(value, str | int | bool):
        return value
    return str(value)


def _rows(engine: Engine, sql: str, **params: Any) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(text(sql), params)]


def latest_session(engine: Engine) -> date | None:
    """The newest session date with any state, or None."""
    with engine.connect() as conn:
        return conn.execute(
            text(
                "SELECT max(d) FROM (SELECT max(session_date) AS d FROM trading_sessions"
                " UNION ALL SELECT max(session_date) FROM step_runs) AS s"
            )
        ).scalar()


def session_of_run(engine: Engine, run_id: str) -> date | None:
    """The session an Airflow run traded: from the step ledger, else the timestamp in its run id (ET)."""
    with engine.connect() as conn:
        found = conn.execute(text("SELECT session_date FROM step_runs WHERE run_id = :r LIMIT 1"),
                             {"r": run_id}).scalar()
    if found is not None:
        return found
    stamp = re.search(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?([+-]\d{2}:\d{2}|Z)?", run_id)
    if stamp is None:
        return None
    try:
        moment = datetime.fromisoformat(stamp.group(0).replace("Z", "+00:00"))
    except ValueError:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(ET).date()


def sessions(engine: Engine, limit: int = 60) -> list[str]:
    """Session dates with any state, newest first."""
    rows = _rows(
        engine,
        "SELECT session_date FROM trading_sessions UNION SELECT session_date FROM step_runs"
        " ORDER BY 1 DESC LIMIT :n",
        n=limit,
    )
    return [r["session_date"].isoformat() for r in rows]


def fetch_row(engine: Engine, table: str, key: dict[str, Any]) -> dict[str, Any] | None:
    """One row of ``table`` by its key (as sent in a row notification)."""
    rows = _rows(engine, ROW_QUERIES[table], **key)
    return plain(rows[0]) if rows else None


def broker_view(steps: list[dict[str, Any]], book: list[dict[str, Any]],
                corrections: list[dict[str, Any]]) -> dict[str, Any]:
    """The broker's positions as the session's steps recorded them.

    Reconcile wrote the broker's positions into the book; the trading task journals every later
    difference it found with the broker (``book_corrected``); the liquidation reports what was left.
    """
    positions = {r["symbol"]: float(r["qty"]) for r in book}
    source, as_of = "position book after reconcile", None
    for ev in corrections:
        p = ev["payload"]
        if p.get("symbol") is not None and p.get("broker_qty") is not None:
            positions[p["symbol"]] = float(p["broker_qty"])
            source, as_of = "book_corrected events", ev["ts"]
    liquidation = next((s for s in steps if s["step"] == "eod_liquidate" and s["ended"]), None)
    if liquidation and liquidation["summary"].get("finished_at"):
        left = liquidation["summary"].get("positions_left") or {}
        positions = {s: float(left.get(s, 0.0)) for s in set(positions) | set(left)}
        source, as_of = "liquidation report", liquidation["summary"]["finished_at"]
    return {"source": source, "as_of": as_of, "positions": positions}


def _params(report: dict[str, Any]) -> dict[str, Any]:
    versions = report["param_versions"]
    used = [u for u in report["param_versions_used"] if u["id"] is not None]
    current = used[-1] if used else None
    in_force = next((v for v in versions if current and v["id"] == current["id"]), None)
    return {"in_force": in_force, "since": current["first_used"] if current else None,
            "versions": versions, "used": report["param_versions_used"]}


def _health(events: list[dict[str, Any]]) -> dict[str, Any]:
    by_kind = {k: [e for e in events if e["kind"] == k] for k in HEALTH_KINDS}
    end = by_kind["live_session_end"][-1]["payload"] if by_kind["live_session_end"] else None
    return {
        "stream_restarts": len(by_kind["stream_restart"]),
        "refills": len(by_kind["refill"]),
        "refill_failures": len(by_kind["refill_failed"]),
        "bars_refilled": sum(int(e["payload"].get("bars") or 0) for e in by_kind["refill"]),
        "last_restart": by_kind["stream_restart"][-1]["ts"] if by_kind["stream_restart"] else None,
        "session_end": end,
    }


def build_snapshot(engine: Engine, session_date: date) -> dict[str, Any]:
    """Everything the Trading view shows for ``session_date``; ``empty`` when nothing was recorded."""
    report = build_report(engine, session_date)
    d = session_date
    phase = _rows(engine, "SELECT * FROM trading_sessions WHERE session_date = :d", d=d)
    book = _rows(engine, "SELECT * FROM positions WHERE session_date = :d ORDER BY symbol", d=d)
    equity = _rows(engine, "SELECT ts, equity, cash, gross_exposure FROM equity WHERE session_date = :d"
                           " ORDER BY ts", d=d)
    signals = _rows(engine, "SELECT * FROM signals WHERE session_date = :d AND ts ="
                            " (SELECT max(ts) FROM signals WHERE session_date = :d) ORDER BY symbol", d=d)
    orders = _rows(engine, "SELECT * FROM (SELECT o.*, dc.ts AS decided_at FROM orders o LEFT JOIN decisions dc"
                           " ON dc.session_date = o.session_date AND dc.seq = o.decision_seq"
                           " WHERE o.session_date = :d ORDER BY o.created_at DESC, o.client_order_id DESC LIMIT :n) o"
                           " ORDER BY created_at, client_order_id", d=d, n=ROW_LIMIT)
    fills = report["fills"][-ROW_LIMIT:]
    events = _rows(engine, "SELECT * FROM events WHERE session_date = :d ORDER BY id", d=d)
    last_decision = _rows(engine, "SELECT seq, ts, param_version_id FROM decisions WHERE session_date = :d"
                                  " ORDER BY seq DESC LIMIT 1", d=d)
    corrections = [e for e in events if e["kind"] == "book_corrected"]
    symbols = sorted(set(DEFAULT_UNIVERSE) | {r["symbol"] for r in book + signals + orders})
    empty = not (report["steps"] or phase or book or equity or orders or events)
    snapshot = {
        "session": d.isoformat(),
        "empty": empty,
        "phase": phase[0] if phase else None,
        "risk": get_risk(engine, d).as_dict(),
        "steps": report["steps"],
        "positions": book,
        "broker": broker_view(report["steps"], book, corrections),
        "orders": orders,
        "fills": fills,
        "signals": signals,
        "equity": equity,
        "pnl": report["pnl"],
        "flat_at_close": report["flat_at_close"],
        "params": _params(report),
        "health": _health(events),
        "last_decision": last_decision[0] if last_decision else None,
        "events": events[-ROW_LIMIT:],
        "symbols": symbols,
        "generated_at": datetime.now().astimezone(),
    }
    return plain(snapshot)
