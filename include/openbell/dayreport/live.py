"""A recorded day as the day report reads it from openbell's Postgres: the live decisions, orders, fills,
account equity and refusals of one session, the settings the day ran with, and the stored bars of the day
and of the warm-up sessions before it.

The settings are those the ``live_trading`` step recorded (its summary's ``run_params``); a day recorded
without them takes its strategy from the parameter versions its decisions used, everything else from the
deployment's run defaults (:func:`openbell.params.run_defaults`), and says so (:attr:`Settings.source`). The
assets' terms (which symbols were fractionable, which shortable and easy to borrow) are those the day's last
``live_trading`` attempt that read them recorded (its summary's ``asset_terms``), if any.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

import pandas as pd
from sqlalchemy import Engine, text

from openbell import calendar
from openbell.calendar import Session
from openbell.store.bars import load_bars

MINUTE = pd.Timedelta(minutes=1)
REJECTED, NOT_SENT = "rejected", "not_sent"


@dataclass(frozen=True)
class Settings:
    """What the day traded and how: the strategy (any spelling :func:`openbell.strategy.resolve` takes), the
    parameters the run fixed (``override``; None: the stored versions), the universe, the warm-up, the risk
    limits, the order rules and the trading cut-off; ``source`` says where they come from. ``fractionable`` and
    ``shortable`` are the assets' terms the day read (None: not recorded)."""

    strategy: str
    source: str
    override: dict[str, Any] | None
    universe: tuple[str, ...]
    warmup_sessions: int
    max_weight: float
    max_gross: float
    daily_loss_limit: float
    min_notional: float
    rebalance_band: float
    liquidate_minutes_before_close: float
    fractional: bool = False
    allow_short: bool = False
    order_type: str = "market"
    fractionable: tuple[str, ...] | None = None
    shortable: tuple[str, ...] | None = None


@dataclass(frozen=True)
class LiveDay:
    """One recorded session. Frames (times aware UTC; ``minute`` is the start of the decided minute):

    ``decisions``: seq, ts, version (parameter version id, None on the strategy's defaults), notes;
    ``orders``: client_order_id, symbol, side, qty, status, origin, decision_seq, reject_reason, minute;
    ``fills``: execution_id, client_order_id, symbol, side, qty, price, ts, origin, minute;
    ``refused``: minute, symbol, side, qty, kind (``limit``, ``rejected``, ``not_sent``), why;
    ``equity``: the account equity after each decided minute (index: the minute's end, as stored);
    ``versions``: the strategy, parameters and source of each version id the decisions used;
    ``bars``: the universe's stored bars from the first warm-up session's open to the day's close.
    """

    session: Session
    settings: Settings
    decisions: pd.DataFrame
    orders: pd.DataFrame
    fills: pd.DataFrame
    refused: pd.DataFrame
    equity: pd.Series
    open_equity: float | None
    versions: dict[int, dict[str, Any]]
    bars: pd.DataFrame
    warmup: list[Session] = field(default_factory=list)

    @property
    def day_bars(self) -> pd.DataFrame:
        """The bars of the session itself."""
        ts = pd.to_datetime(self.bars["timestamp"], utc=True)
        return self.bars[(ts >= pd.Timestamp(self.session.open)).to_numpy()]

    @property
    def trade_until(self) -> pd.Timestamp:
        """The trading cut-off: no order after it, the liquidation starts then."""
        return pd.Timestamp(self.session.close) - pd.Timedelta(minutes=self.settings.liquidate_minutes_before_close)

    @property
    def capital(self) -> float:
        """The equity the day started with: the broker's at the open, else after the first minute."""
        if self.open_equity:
            return self.open_equity
        return float(self.equity.iloc[0]) if len(self.equity) else 100_000.0


def _frame(engine: Engine, sql: str, columns: list[str], **params: Any) -> pd.DataFrame:
    with engine.connect() as conn:
        rows = [tuple(r) for r in conn.execute(text(sql), params)]
    return pd.DataFrame(rows, columns=columns)


def _utc(column: pd.Series) -> pd.Series:
    return pd.to_datetime(column, utc=True).dt.as_unit("ns") if len(column) else column.astype("datetime64[ns, UTC]")


def _defaults() -> dict[str, Any]:
    from openbell.params import InvalidRunParams, RunParams, run_defaults

    try:
        return run_defaults().model_dump(mode="json")
    except InvalidRunParams:
        return RunParams().model_dump(mode="json")


def recorded_run_params(engine: Engine, session_date: date) -> dict[str, Any] | None:
    """The run parameters the day's last ``live_trading`` attempt that recorded them recorded."""
    with engine.connect() as conn:
        found = conn.execute(text(
            "SELECT summary -> 'run_params' FROM step_runs WHERE session_date = :d AND step = 'live_trading'"
            " AND summary ? 'run_params' ORDER BY started_at DESC, id DESC LIMIT 1"), {"d": session_date}).scalar()
    return found if isinstance(found, dict) else None


def recorded_asset_terms(engine: Engine, session_date: date) -> dict[str, Any] | None:
    """The assets' terms (``fractionable``, ``shortable``: symbol lists) the day's last ``live_trading`` attempt
    that read them recorded."""
    with engine.connect() as conn:
        found = conn.execute(text(
            "SELECT summary -> 'asset_terms' FROM step_runs WHERE session_date = :d AND step = 'live_trading'"
            " AND jsonb_typeof(summary -> 'asset_terms') = 'object' ORDER BY started_at DESC, id DESC LIMIT 1"),
            {"d": session_date}).scalar()
    return found if isinstance(found, dict) else None


def _symbols(terms: dict[str, Any] | None, key: str) -> tuple[str, ...] | None:
    found = (terms or {}).get(key)
    return tuple(str(s) for s in found) if isinstance(found, list) else None


def settings_of(recorded: dict[str, Any] | None, version_strategies: set[str],
                terms: dict[str, Any] | None = None) -> Settings:
    """The day's settings: ``recorded`` over the run defaults; the strategy, when not recorded, of the
    parameter versions the decisions used (``version_strategies``) if they name one; ``terms`` the assets'
    terms the day read (:func:`recorded_asset_terms`)."""
    values = {**_defaults(), **(recorded or {})}
    if recorded is not None:
        source = "recorded by the day's live_trading step"
    elif len(version_strategies) == 1:
        values["strategy"] = next(iter(version_strategies))
        source = ("not recorded: the strategy of the parameter versions the decisions used, the other settings"
                  " the deployment's run defaults")
    else:
        source = "not recorded: the deployment's run defaults"
    return Settings(
        strategy=str(values["strategy"]), source=source, override=values.get("strategy_params"),
        universe=tuple(values["universe"]), warmup_sessions=int(values["warmup_sessions"]),
        max_weight=float(values["max_weight"]), max_gross=float(values["max_gross"]),
        daily_loss_limit=float(values["daily_loss_limit"]), min_notional=float(values["min_notional"]),
        # a day recorded before the band existed traded every change worth min_notional
        rebalance_band=float(recorded.get("rebalance_band", 0.0) if recorded is not None else values["rebalance_band"]),
        liquidate_minutes_before_close=float(values["liquidate_minutes_before_close"]),
        # a day recorded before the order kinds existed traded whole shares, long only
        fractional=bool(recorded.get("fractional", False) if recorded is not None else values["fractional"]),
        allow_short=bool(recorded.get("allow_short", False) if recorded is not None else values["allow_short"]),
        order_type=str(recorded.get("order_type", "market") if recorded is not None else values["order_type"]),
        fractionable=_symbols(terms, "fractionable"), shortable=_symbols(terms, "shortable"))


def _refused(engine: Engine, d: date, orders: pd.DataFrame, minute_of: dict[int, pd.Timestamp]) -> pd.DataFrame:
    """Orders a pre-trade limit refused (events ``order_refused``), the broker rejected, or that were not sent."""
    events = _frame(engine, "SELECT payload FROM events WHERE session_date = :d AND kind = 'order_refused'"
                    " ORDER BY ts, id", ["payload"], d=d)
    rows = []
    for p in events["payload"]:
        seq = p.get("decision_seq")
        why = " ".join(str(p[k]) for k in ("limit", "value") if p.get(k) is not None)
        rows.append((minute_of.get(seq) if seq is not None else None, p.get("symbol"), p.get("side"),
                     float(p.get("qty") or 0.0), "limit", f"{why} over {p['bound']}" if "bound" in p else why))
    failed = orders[orders["status"].isin([REJECTED, NOT_SENT])]
    for o in failed.itertuples():
        rows.append((o.minute, o.symbol, o.side, float(o.qty), o.status, o.reject_reason or ""))
    out = pd.DataFrame(rows, columns=["minute", "symbol", "side", "qty", "kind", "why"])
    out["minute"] = _utc(out["minute"])
    return out.sort_values("minute", kind="stable").reset_index(drop=True)


def load_day(engine: Engine, session_date: date) -> LiveDay:
    """Everything the day report compares, for ``session_date`` (an NYSE session)."""
    s = calendar.session(session_date)
    if s is None:
        raise ValueError(f"{session_date} is not an NYSE session")
    d = session_date
    decisions = _frame(engine, "SELECT seq, ts, param_version_id, targets FROM decisions WHERE session_date = :d"
                       " ORDER BY ts, seq", ["seq", "ts", "version", "targets"], d=d)
    decisions["ts"] = _utc(decisions["ts"])
    decisions["version"] = [None if pd.isna(v) else int(v) for v in decisions["version"]]
    decisions["notes"] = [list((t or {}).get("notes") or []) for t in decisions["targets"]]
    decisions = decisions.drop(columns="targets")
    minute_of = dict(zip(decisions["seq"].astype(int), decisions["ts"], strict=True))
    orders = _frame(engine, "SELECT client_order_id, symbol, side, qty, status, origin, decision_seq, reject_reason"
                    " FROM orders WHERE session_date = :d ORDER BY created_at, client_order_id",
                    ["client_order_id", "symbol", "side", "qty", "status", "origin", "decision_seq", "reject_reason"],
                    d=d)
    orders["qty"] = orders["qty"].astype(float)
    orders["minute"] = _utc(pd.Series([minute_of.get(int(q)) if pd.notna(q) else None for q in orders["decision_seq"]],
                                      dtype=object))
    fills = _frame(engine, "SELECT f.execution_id, f.client_order_id, f.symbol, f.side, f.qty, f.price, f.ts,"
                   " o.origin, o.decision_seq FROM fills f LEFT JOIN orders o ON o.client_order_id = f.client_order_id"
                   " WHERE f.session_date = :d ORDER BY f.ts, f.execution_id",
                   ["execution_id", "client_order_id", "symbol", "side", "qty", "price", "ts", "origin",
                    "decision_seq"], d=d)
    fills[["qty", "price"]] = fills[["qty", "price"]].astype(float)
    fills["ts"] = _utc(fills["ts"])
    fills["minute"] = _utc(pd.Series([minute_of.get(int(q)) if pd.notna(q) else None for q in fills["decision_seq"]],
                                     dtype=object))
    equity = _frame(engine, "SELECT ts, equity FROM equity WHERE session_date = :d ORDER BY ts", ["ts", "equity"], d=d)
    with engine.connect() as conn:
        open_equity = conn.execute(text("SELECT open_equity FROM trading_sessions WHERE session_date = :d"),
                                   {"d": d}).scalar()
    used = sorted({int(v) for v in decisions["version"] if v is not None})
    versions = _versions(engine, used)
    settings = settings_of(recorded_run_params(engine, d), {v["strategy"] for v in versions.values()},
                           recorded_asset_terms(engine, d))
    warmup = calendar.previous_sessions(d, settings.warmup_sessions)
    bars = load_bars(engine, settings.universe, warmup[0].open if warmup else s.open, s.close)
    return LiveDay(
        session=s, settings=settings, decisions=decisions, orders=orders, fills=fills,
        refused=_refused(engine, d, orders, minute_of),
        equity=pd.Series(equity["equity"].astype(float).to_numpy(), index=pd.DatetimeIndex(_utc(equity["ts"])),
                         name="equity"),
        open_equity=float(open_equity) if open_equity is not None else None, versions=versions, bars=bars,
        warmup=warmup)


def _versions(engine: Engine, ids: list[int]) -> dict[int, dict[str, Any]]:
    if not ids:
        return {}
    rows = _frame(engine, "SELECT id, strategy, params, source FROM param_versions WHERE id = ANY(:ids)",
                  ["id", "strategy", "params", "source"], ids=ids)
    return {int(r.id): {"strategy": r.strategy, "params": r.params, "source": r.source} for r in rows.itertuples()}

