"""One session's report from Postgres: steps, orders, fills, P&L, parameter versions, risk state changes,
flatness. The text prints every time as New York time (the market's), marked ``ET``; the JSON keeps each
time as stored, with its UTC offset. The command is :mod:`openbell.runtime.report_cli`."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import Engine, text

from openbell import calendar
from openbell.store.ledger import steps_for
from openbell.store.sessions import get_risk


def _rows(engine: Engine, sql: str, session_date: date, **params: Any) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(text(sql), {"d": session_date, **params})]


def et_time(value: datetime | str | None, *, seconds: bool = False) -> str:
    """A stored time (aware, or ISO text with its offset) as New York time, marked: ``14:33 ET``; ``--:-- ET``
    when there is none or it does not parse."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            value = None
    if value is None or value.tzinfo is None:
        return "--:-- ET"
    return f"{value.astimezone(calendar.ET):%H:%M:%S ET}" if seconds else f"{value.astimezone(calendar.ET):%H:%M ET}"


def _duration(started: datetime | None, ended: datetime | None) -> float | None:
    return round((ended - started).total_seconds(), 3) if started and ended else None


_RECOVERY_KEYS = ("abandoned_attempts", "positions_adopted", "orders_found", "orders_cancelled", "differences",
                  "fills_recovered", "refilled_bars", "stream_restarts", "reconnects")


def recovered(summary: dict[str, Any] | None) -> dict[str, Any]:
    """What an attempt took over or repaired (non-zero only): earlier attempts closed, positions adopted,
    orders found or cancelled, differences with the broker, fills and bars recovered, stream restarts."""
    summary = summary or {}
    sources = (summary, summary.get("reconcile") or {})  # the trading step nests its reconciliation
    found: dict[str, Any] = {}
    for key in _RECOVERY_KEYS:
        value = next((src[key] for src in sources if src.get(key)), None)
        if value:
            found[key] = value
    return found


def step_table(engine: Engine, session_date: date) -> list[dict[str, Any]]:
    """One row per step: its latest attempt's status, the number of attempts, durations."""
    by_step: dict[str, list[dict[str, Any]]] = {}
    for row in steps_for(engine, session_date):
        by_step.setdefault(row["step"], []).append(row)
    out = []
    for step, rows in by_step.items():
        last = rows[-1]
        out.append(
            {
                "step": step,
                "status": last["status"],
                "attempts": len(rows),
                "started": last["started"],
                "ended": last["ended"],
                "duration_s": _duration(last["started"], last["ended"]),
                "summary": last["summary"],
                "error": last["error"],
                "history": [
                    {"attempt": r["attempt"], "status": r["status"], "error": r["error"],
                     "duration_s": _duration(r["started"], r["ended"]), "recovered": recovered(r["summary"])}
                    for r in rows
                ],
            }
        )
    return out


def market_facts(engine: Engine, session_date: date) -> dict[str, Any]:
    """How the market and the broker treated the day: REST refills and corrected bars (every live attempt),
    minutes without a bar per symbol (no trades), rejections by reason, halts seen."""
    live = [r["summary"] or {} for r in steps_for(engine, session_date) if r["step"] == "live_trading"]
    rejections: dict[str, int] = {}
    for summary in live:
        for reason, n in (summary.get("rejections_by_reason") or {}).items():
            rejections[reason] = rejections.get(reason, 0) + int(n)
    without: dict[str, int] = {}
    s = calendar.session(session_date)
    if s is not None:
        counts = _rows(engine, "SELECT symbol, count(*) AS n FROM bars WHERE ts >= :a AND ts < :b GROUP BY symbol",
                       session_date, a=s.open, b=s.close)
        minutes = len(s.minutes())
        without = {r["symbol"]: minutes - int(r["n"]) for r in counts if int(r["n"]) < minutes}
    halts = _rows(engine, "SELECT payload FROM events WHERE session_date = :d AND kind IN"
                  " ('symbol_halted', 'symbol_resumed') ORDER BY id", session_date)
    return {
        "refill_calls": sum(int(x.get("refills") or 0) for x in live),
        "bars_corrected": sum(int(x.get("bars_corrected") or 0) for x in live),
        "minutes_without_bars": dict(sorted(without.items())),
        "rejections_by_reason": rejections,
        "halts": [h["payload"] for h in halts],
    }


def build_report(engine: Engine, session_date: date) -> dict[str, Any]:
    """The session's report as JSON-able data."""
    steps = step_table(engine, session_date)
    # an order's market time: its first fill, else the minute that decided it (created_at is wall time)
    orders = _rows(
        engine,
        "SELECT o.client_order_id, o.symbol, o.side, o.qty, o.notional, o.status, o.filled_qty, o.filled_avg_price,"
        " o.origin, o.reason, o.reject_reason, o.created_at, COALESCE((SELECT min(f.ts) FROM fills f"
        " WHERE f.client_order_id = o.client_order_id), d.ts) AS market_time FROM orders o"
        " LEFT JOIN decisions d ON d.session_date = o.session_date AND d.seq = o.decision_seq"
        " WHERE o.session_date = :d ORDER BY o.created_at, o.client_order_id",
        session_date,
    )
    fills = _rows(
        engine,
        "SELECT execution_id, client_order_id, symbol, side, qty, price, ts FROM fills"
        " WHERE session_date = :d ORDER BY ts, execution_id",
        session_date,
    )
    equity = _rows(engine, "SELECT ts, equity FROM equity WHERE session_date = :d ORDER BY ts", session_date)
    params = _rows(
        engine,
        "SELECT id, strategy, source, params, score, created_at FROM param_versions"
        " WHERE session_date = :d OR id IN (SELECT DISTINCT param_version_id FROM decisions"
        " WHERE session_date = :d) ORDER BY id",
        session_date,
    )
    used = _rows(
        engine,
        "SELECT param_version_id AS id, min(ts) AS first_used, max(ts) AS last_used, count(*) AS decisions"
        " FROM decisions WHERE session_date = :d GROUP BY param_version_id ORDER BY min(ts)",
        session_date,
    )
    risk = _rows(engine, "SELECT ts, payload FROM events WHERE session_date = :d AND kind = 'risk_state'"
                 " ORDER BY ts, id", session_date)
    cash_flow = sum(float(f["qty"]) * float(f["price"]) * (1 if f["side"] == "sell" else -1) for f in fills)
    pnl: dict[str, Any] = {"fills_cash_flow": round(cash_flow, 2)}
    if equity:
        start, end = float(equity[0]["equity"]), float(equity[-1]["equity"])
        pnl.update({"equity_start": start, "equity_end": end, "change": round(end - start, 2)})
    liquidation = next((s for s in steps if s["step"] == "eod_liquidate"), None)
    flat = bool(liquidation and liquidation["status"] == "success" and (liquidation["summary"] or {}).get("flat"))
    return {
        "session": session_date.isoformat(),
        "steps": steps,
        "orders": orders,
        "fills": fills,
        "pnl": pnl,
        "param_versions": params,
        "param_versions_used": used,
        "risk_changes": [{"market_time": r["ts"], **(r["payload"] or {})} for r in risk],
        "risk": get_risk(engine, session_date).as_dict(),
        "flat_at_close": flat,
        "market": market_facts(engine, session_date),
    }


def _risk_line(risk: dict[str, Any]) -> str:
    """The risk state at the end: who set it (the loss stop, an operator or the strategy's failures) and the extra
    loss budget granted."""
    if not risk.get("by"):
        return f"risk state at the end: {risk.get('state', 'ACTIVE')} (never changed)"
    who = {"loss_stop": "the loss stop", "operator": "an operator",
           "strategy_failed": "the strategy's failures"}.get(risk.get("cause") or "", "unknown")
    extra = f"; extra loss budget granted today {risk['extra_loss']:.2f}" if risk.get("extra_loss") else ""
    return f"risk state at the end: {risk['state']}, set by {who} ({risk['by']}): {risk.get('reason')}{extra}"


def _amount(order: dict[str, Any]) -> str:
    """An order's size: its shares, or the dollars of a notional order (Alpaca says no qty for one)."""
    if order.get("notional") is None:
        return f"{float(order['qty']):.2f}"
    return f"${float(order['notional']):,.2f}"


def render(report: dict[str, Any]) -> str:
    """The report as text for a terminal; every time is New York time, marked ``ET``."""
    lines = [f"openbell report for session {report['session']} (all times in New York time, ET)", "", "steps:"]
    for s in report["steps"]:
        dur = f"{s['duration_s']:.1f}s" if s["duration_s"] is not None else "-"
        err = f"  error: {s['error'].splitlines()[-1]}" if s.get("error") else ""
        summary = s["summary"] or {}
        reason = summary.get("reason")
        note = f"  ({reason})" if reason else ""
        at = f"  at {et_time(summary['market_time'])}" if summary.get("market_time") else ""
        lines.append(f"  {s['step']:<16} {s['status']:<9} attempts={s['attempts']:<2} {dur:>8}{at}{note}{err}")
        for h in s["history"] if s["attempts"] > 1 else []:
            why = f"  {h['error'].splitlines()[-1]}" if h.get("error") else ""
            got = ", ".join(f"{k}={v}" for k, v in h["recovered"].items())
            lines.append(f"    attempt {h['attempt']}: {h['status']}{why}" + (f"  recovered: {got}" if got else ""))
    filled = sum(1 for o in report["orders"] if o["status"] == "filled")
    lines += ["", f"orders: {len(report['orders'])} ({filled} filled), fills: {len(report['fills'])}"]
    for o in report["orders"][:12]:
        lines.append(f"  {et_time(o.get('market_time'))}  {o['client_order_id']:<28} {o['side']:<4}"
                     f" {_amount(o):>10} {o['symbol']:<5} {o['status']}")
    if len(report["orders"]) > 12:
        lines.append(f"  ... {len(report['orders']) - 12} more")
    pnl = report["pnl"]
    if "change" in pnl:
        lines.append(f"\nP&L: {pnl['change']:+.2f} (equity {pnl['equity_start']:.2f} -> {pnl['equity_end']:.2f})")
    lines.append(f"cash flow from fills: {pnl['fills_cash_flow']:+.2f}")
    lines.append("parameter versions used: " + (", ".join(
        f"{'defaults' if u['id'] is None else 'v' + str(u['id'])} from {et_time(u['first_used'])}"
        f" ({u['decisions']} decisions)" for u in report["param_versions_used"]) or "none"))
    lines.append(f"flat at close: {'yes' if report['flat_at_close'] else 'NO'}")
    changes = report.get("risk_changes") or []
    lines.append("risk state changes:" + ("" if changes else " none"))
    for r in changes:
        cause = {"loss_stop": " (loss stop)", "strategy_failed": " (strategy failed)"}.get(r.get("cause") or "", "")
        extra = f", extra loss budget {float(r['extra_loss']):.2f}" if r.get("extra_loss") else ""
        lines.append(f"  {et_time(r['market_time'])}  {r.get('from')} -> {r.get('to')} by {r.get('by')}{cause}:"
                     f" {r.get('reason')}{extra}")
    lines.append(_risk_line(report.get("risk") or {}))
    market = report.get("market") or {}
    if market:
        lines.append(f"\nmarket: REST refill calls {market['refill_calls']}, bars corrected {market['bars_corrected']}")
        thin = ", ".join(f"{k} {v}" for k, v in market["minutes_without_bars"].items())
        lines.append(f"minutes without a bar (no trades): {thin or 'none'}")
        why = ", ".join(f"{k} {v}" for k, v in market["rejections_by_reason"].items())
        lines.append(f"rejections by reason: {why or 'none'}")
        lines.append("halts: " + (", ".join(f"{h.get('symbol')} {h.get('change')} {et_time(h.get('market_time'))}"
                                             for h in market["halts"]) or "none"))
    return "\n".join(lines)
