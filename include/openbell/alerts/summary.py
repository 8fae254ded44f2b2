"""The end-of-day summary and the not-flat alert, written from the session's report (``openbell.report``)."""

from __future__ import annotations

from typing import Any

REJECTED = "rejected"


def _last_line(error: str | None) -> str:
    lines = (error or "").strip().splitlines()
    return lines[-1] if lines else ""


def figures(report: dict[str, Any]) -> dict[str, Any]:
    """The summary's figures: P&L, orders, fills, rejections, attempts per step, flatness, parameters (the
    stored versions used, and all used in the order of first use, ``defaults`` for the strategy's defaults)."""
    orders = report["orders"]
    pnl = report["pnl"]
    return {
        "pnl": pnl.get("change"),
        "equity_start": pnl.get("equity_start"),
        "equity_end": pnl.get("equity_end"),
        "fills_cash_flow": pnl.get("fills_cash_flow", 0.0),
        "orders": len(orders),
        "filled": sum(1 for o in orders if o["status"] == "filled"),
        "rejections": sum(1 for o in orders if o["status"] == REJECTED or o.get("reject_reason")),
        "fills": len(report["fills"]),
        "steps": {s["step"]: {"status": s["status"], "attempts": s["attempts"]} for s in report["steps"]},
        "flat_at_close": bool(report["flat_at_close"]),
        "param_versions": [u["id"] for u in report["param_versions_used"] if u["id"] is not None],
        "params_used": ["defaults" if u["id"] is None else f"v{u['id']}" for u in report["param_versions_used"]],
    }


def summary_text(report: dict[str, Any]) -> tuple[str, str]:
    """The end-of-day summary's title and body."""
    f = figures(report)
    session = report["session"]
    flat = "yes" if f["flat_at_close"] else "NO"
    pnl = f"{f['pnl']:+.2f}" if f["pnl"] is not None else "n/a (no equity recorded)"
    title = f"openbell {session}: P&L {pnl}, flat at the close: {flat}"
    lines = [f"Session {session}"]
    if f["pnl"] is not None:
        lines.append(f"P&L: {pnl} (equity {f['equity_start']:.2f} -> {f['equity_end']:.2f})")
    else:
        lines.append(f"P&L: {pnl}")
    lines += [
        f"Cash flow from fills: {f['fills_cash_flow']:+.2f}",
        f"Orders: {f['orders']} ({f['filled']} filled), fills: {f['fills']}, rejections: {f['rejections']}",
        f"Flat at the close: {flat}",
        "Parameter version: " + (", ".join(f["params_used"]) or "none used"),
        "Steps (status, attempts):",
    ]
    for s in report["steps"]:
        error = f" - {_last_line(s.get('error'))}" if s["status"] != "success" and s.get("error") else ""
        lines.append(f"  {s['step']}: {s['status']}, {s['attempts']} attempt(s){error}")
    if not report["steps"]:
        lines.append("  none recorded")
    return title, "\n".join(lines)


def not_flat_text(report: dict[str, Any]) -> tuple[str, str]:
    """The alert for an account not proven flat at the close: what the liquidation last said."""
    session = report["session"]
    liquidation = next((s for s in report["steps"] if s["step"] == "eod_liquidate"), None)
    title = f"openbell {session}: account NOT flat at the close"
    if liquidation is None:
        return title, f"Session {session}: the liquidation never ran. Check the broker's positions and orders."
    summary = liquidation.get("summary") or {}
    lines = [f"Session {session}: eod_liquidate {liquidation['status']} after {liquidation['attempts']} attempt(s)."]
    if summary.get("positions_left"):
        lines.append(f"Positions left: {summary['positions_left']}")
    if summary.get("open_orders_left"):
        lines.append(f"Open orders left: {summary['open_orders_left']}")
    if liquidation.get("error"):
        lines.append(f"Error: {_last_line(liquidation['error'])}")
    lines.append("Check the broker's positions and orders now.")
    return title, "\n".join(lines)
