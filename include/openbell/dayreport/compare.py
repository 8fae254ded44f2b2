"""Where live trading differed from the replay of the same day, and what each difference cost.

- **missed**: a minute of the session with bars (any minute, when none are stored) that has no live
  decision (the loop was not running, or had not caught up); a trade of the replay live never made, with
  why: no live decision that minute, a pre-trade limit refused it, the broker rejected it, it was not sent,
  or live decided otherwise.
- **late**: a trade of the replay (a symbol and side at minute t) live made at a later minute t', before
  the replay traded that symbol the other way; late by t' - t minutes.
- **slippage**: each live fill against the decision price, the close of the minute that decided it (a fill
  with no decision, e.g. the liquidation's, against the close of the minute before it filled).

P&L: live, what the day's fills made with any position they leave marked at the day's last close (the
account's equity change when the day starts flat); the replay's, flat to flat. Their difference splits
exactly into the slippage and the position differences: each minute's change of (live position - replay
position) per symbol is a lot, opened by a cause (the replay trade live missed or made late, the refused
order, ...) and closed, first in first out, by later changes, earning the price move between; a lot still
open at the end is marked at the last close. What no cause explains (sizes differ, live-only orders, orders
that never filled) is ``other``.
"""

from __future__ import annotations

from collections import defaultdict, deque
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from openbell.dayreport.live import MINUTE, NOT_SENT, REJECTED, LiveDay
from openbell.dayreport.replay import Replay

CAUSES = ("slippage", "late", "missed decisions", "refused", "not sent", "other")
MISSED_CAUSE = {"no live decision": "missed decisions", "refused by a limit": "refused",
                "rejected by the broker": "refused", "not sent": "not sent", "live decided otherwise": "other"}
Causes = dict[tuple[pd.Timestamp, str], str]  # (minute, symbol) -> the cause of a difference opened then
ORDER_COLUMNS = ["minute", "symbol", "side", "qty", "price", "status", "cause", "live_minute", "live_qty", "delay"]


@dataclass(frozen=True)
class Comparison:
    """Live against the replay (``replay_pnl`` and ``attribution`` None/empty without a replay).

    ``orders``: each replay order before the cut-off and what live did (:data:`ORDER_COLUMNS`; status
    ``on time``, ``late`` or ``missed``, ``cause`` of a missed one); ``live_only``: live orders sent that
    match none; ``fills``: each live fill with its reference price, ``slippage`` per share (positive:
    dearer) and ``effect`` on the P&L; ``live_path``/``replay_path``: the P&L after each minute.
    """

    live_pnl: float
    equity_change: float | None
    replay_pnl: float | None
    attribution: dict[str, float]
    minutes: pd.DatetimeIndex
    missed_minutes: pd.DatetimeIndex
    orders: pd.DataFrame
    live_only: pd.DataFrame
    fills: pd.DataFrame
    refused: pd.DataFrame
    live_path: pd.Series
    replay_path: pd.Series | None

    @property
    def difference(self) -> float | None:
        return None if self.replay_pnl is None else self.live_pnl - self.replay_pnl

    @property
    def slippage(self) -> float:
        """The fills' effect on the P&L against their decision prices (negative: a cost)."""
        return float(self.fills["effect"].sum()) if len(self.fills) else 0.0

    def count(self, status: str) -> int:
        return int((self.orders["status"] == status).sum()) if len(self.orders) else 0


def closes_on(day: LiveDay, minutes: pd.DatetimeIndex) -> pd.DataFrame:
    """Minute x symbol closes of the day's bars on ``minutes``, each carried forward from its last bar."""
    bars = day.day_bars
    frame = bars.assign(timestamp=pd.to_datetime(bars["timestamp"], utc=True).dt.as_unit("ns"))
    wide = frame.pivot_table(index="timestamp", columns="symbol", values="close", aggfunc="last")
    grid = wide.index.union(pd.DatetimeIndex(minutes).as_unit("ns"))
    return wide.reindex(grid).sort_index().ffill()


def _price(closes: pd.DataFrame, minute: pd.Timestamp, symbol: str) -> float:
    if symbol not in closes.columns or minute not in closes.index:
        return float("nan")
    return float(closes.at[minute, symbol])


def _signed(side: pd.Series, qty: pd.Series) -> np.ndarray:
    return np.where(side == "buy", 1.0, -1.0) * qty.astype(float).to_numpy()


def _fill_minutes(day: LiveDay, last: pd.Timestamp) -> pd.Series:
    """The minute each fill belongs to: its decision's, else the minute before the one it filled in."""
    f = day.fills
    own = (f["ts"].dt.floor("min") - MINUTE).clip(lower=pd.Timestamp(day.session.open), upper=last)
    return f["minute"].where(f["minute"].notna(), own)


def slippage_of(day: LiveDay, closes: pd.DataFrame, minutes: pd.Series) -> pd.DataFrame:
    """Each live fill with its reference price, its slippage per share (positive: dearer than the reference)
    and its effect on the P&L (negative: a cost); a fill without a reference price counts 0."""
    f = day.fills
    ref = np.array([_price(closes, m, s) for m, s in zip(minutes, f["symbol"], strict=True)], dtype=float)
    ref = np.where(np.isfinite(ref), ref, f["price"].to_numpy(dtype=float))
    sign = np.where(f["side"] == "buy", 1.0, -1.0)
    per_share = sign * (f["price"].to_numpy(dtype=float) - ref)
    return pd.DataFrame({"ts": f["ts"], "minute": minutes, "symbol": f["symbol"], "side": f["side"],
                         "qty": f["qty"], "price": f["price"], "reference": ref, "slippage": per_share,
                         "effect": -per_share * f["qty"].to_numpy(dtype=float), "origin": f["origin"]})


def _live_sent(day: LiveDay) -> pd.DataFrame:
    o = day.orders
    keep = (o["origin"] == "strategy") & ~o["status"].isin([REJECTED, NOT_SENT]) & o["minute"].notna()
    return o[keep].reset_index(drop=True)


def _missed_cause(day: LiveDay, decided: set[pd.Timestamp], minute: pd.Timestamp, symbol: str, side: str) -> str:
    if minute not in decided:
        return "no live decision"
    r = day.refused
    there = r[(r["minute"] == minute) & (r["symbol"] == symbol) & (r["side"] == side)]
    for kind, cause in (("limit", "refused by a limit"), (REJECTED, "rejected by the broker"), (NOT_SENT, "not sent")):
        if (there["kind"] == kind).any():
            return cause
    return "live decided otherwise"


def match_orders(day: LiveDay, replay: Replay, decided: set[pd.Timestamp]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(each replay order before the cut-off with what live did, the live orders sent that match none)."""
    rep = replay.result.orders
    rep = rep[rep["kind"] == "policy"].reset_index(drop=True)
    live = _live_sent(day)
    used = np.zeros(len(live), dtype=bool)
    rows: list[dict[str, Any]] = [
        {"minute": t, "symbol": s, "side": side, "qty": float(q), "price": float(p), "status": "missed", "cause": "",
         "live_minute": pd.NaT, "live_qty": np.nan, "delay": np.nan}
        for t, s, side, q, p in zip(rep["time"], rep["symbol"], rep["side"], rep["qty"], rep["price"], strict=True)]
    for row in rows:  # first the same minute
        hit = np.flatnonzero(~used & (live["minute"] == row["minute"]).to_numpy()
                             & (live["symbol"] == row["symbol"]).to_numpy() & (live["side"] == row["side"]).to_numpy())
        if len(hit):
            used[hit[0]] = True
            row.update(status="on time", live_minute=row["minute"], live_qty=float(live.at[hit[0], "qty"]), delay=0.0)
    for i, row in enumerate(rows):  # then later, before the replay trades the symbol the other way
        if row["status"] != "missed":
            continue
        other = [r["minute"] for r in rows[i + 1:] if r["symbol"] == row["symbol"] and r["side"] != row["side"]]
        until = other[0] if other else pd.Timestamp.max.tz_localize("UTC")
        hit = np.flatnonzero(~used & (live["minute"] > row["minute"]).to_numpy() & (live["minute"] < until).to_numpy()
                             & (live["symbol"] == row["symbol"]).to_numpy() & (live["side"] == row["side"]).to_numpy())
        if len(hit):
            j = hit[np.argmin(live["minute"].to_numpy()[hit])]
            used[j] = True
            delay = (live.at[j, "minute"] - row["minute"]) / MINUTE
            row.update(status="late", live_minute=live.at[j, "minute"], live_qty=float(live.at[j, "qty"]), delay=delay)
        else:
            row["cause"] = _missed_cause(day, decided, row["minute"], row["symbol"], row["side"])
    orders = pd.DataFrame(rows, columns=ORDER_COLUMNS)
    return orders, live[~used].reset_index(drop=True)


def _opening_cause(orders: pd.DataFrame, live_only: pd.DataFrame) -> Causes:
    """The cause of a position difference opened at (minute, symbol)."""
    causes: Causes = {}
    for r in orders.itertuples():
        if r.status == "late":
            causes[(r.minute, r.symbol)] = causes[(r.live_minute, r.symbol)] = "late"
        elif r.status == "missed":
            causes[(r.minute, r.symbol)] = MISSED_CAUSE[r.cause]
    for r in live_only.itertuples():
        causes.setdefault((r.minute, r.symbol), "other")
    return causes


def attribute(gaps: pd.DataFrame, closes: pd.DataFrame, causes: Causes) -> dict[str, float]:
    """The P&L of the position differences by cause: ``gaps`` holds each minute's change of (live - replay)
    position per symbol; lots opened by a cause are closed first in first out, a lot open at the end is
    marked at the last close."""
    out: dict[str, float] = defaultdict(float)
    for symbol in gaps.columns:
        if symbol not in closes.columns:  # no bar: left to "other"
            continue
        lots: deque[list[Any]] = deque()
        for minute, inc in gaps[symbol].items():
            if abs(inc) < 1e-9:
                continue
            price = _price(closes, minute, symbol)
            while lots and abs(inc) > 1e-9 and np.sign(lots[0][0]) != np.sign(inc):
                lot = lots[0]
                q = np.sign(lot[0]) * min(abs(lot[0]), abs(inc))
                out[lot[2]] += q * (price - lot[1])
                lot[0] -= q
                inc += q
                if abs(lot[0]) < 1e-9:
                    lots.popleft()
            if abs(inc) > 1e-9:
                lots.append([inc, price, causes.get((minute, symbol), "other")])
        last = float(closes[symbol].dropna().iloc[-1]) if closes[symbol].notna().any() else 0.0
        for q, price, cause in lots:
            out[cause] += q * (last - price)
    return dict(out)


def _live_path(day: LiveDay, closes: pd.DataFrame, grid: pd.DatetimeIndex) -> tuple[pd.Series, float]:
    """The live P&L after each minute of ``grid`` (fills in the minute they happened in, positions at the
    carried closes), and at the end (every fill, positions at the last close)."""
    f = day.fills
    signed = pd.Series(_signed(f["side"], f["qty"]), index=f.index)
    at = f["ts"].dt.floor("min").clip(lower=grid[0], upper=grid[-1])
    cash = (-(signed * f["price"].astype(float))).groupby(at).sum().reindex(grid, fill_value=0.0).cumsum()
    held = signed.groupby([at, f["symbol"]]).sum().unstack(fill_value=0.0).reindex(grid, fill_value=0.0).cumsum()
    prices = closes.reindex(columns=held.columns)
    last = f.groupby("symbol")["price"].last().reindex(held.columns)
    prices = prices.fillna(prices.ffill().bfill()).fillna(last)  # a symbol without bars: its last fill price
    path = cash + (held * prices).sum(axis=1)
    return path.rename("live"), float(path.iloc[-1]) if len(path) else 0.0


def compare(day: LiveDay, replay: Replay | None) -> Comparison:
    """Live ``day`` against its ``replay`` (None: live figures only)."""
    bars = day.day_bars
    grid = day.session.minutes().as_unit("ns")
    minutes = pd.DatetimeIndex(sorted(pd.to_datetime(bars["timestamp"], utc=True).unique())).as_unit("ns") \
        if len(bars) else grid
    closes = closes_on(day, grid).reindex(grid) if len(bars) else pd.DataFrame(index=grid)
    decided = set(day.decisions["ts"])
    missed = minutes[~minutes.isin(list(decided))]
    fill_minutes = _fill_minutes(day, grid[-1])
    fills = slippage_of(day, closes, fill_minutes)
    live_path, live_pnl = _live_path(day, closes, grid)
    equity_change = float(day.equity.iloc[-1] - day.capital) if len(day.equity) else None
    if replay is None:
        return Comparison(live_pnl, equity_change, None, {}, minutes, missed, pd.DataFrame(columns=ORDER_COLUMNS),
                          _live_sent(day), fills, day.refused, live_path, None)
    orders, live_only = match_orders(day, replay, decided)
    rep = replay.result.orders
    symbols = sorted({*rep["symbol"], *day.fills["symbol"]})
    gaps = pd.DataFrame(0.0, index=grid, columns=symbols)
    for m, s, q in zip(fill_minutes, day.fills["symbol"], _signed(day.fills["side"], day.fills["qty"]), strict=True):
        gaps.loc[m, s] += q
    for m, s, q in zip(rep["time"], rep["symbol"], _signed(rep["side"], rep["qty"]), strict=True):
        gaps.loc[m, s] -= q
    split = attribute(gaps, closes, _opening_cause(orders, live_only))
    replay_pnl = float(replay.result.total_pnl)
    attribution = {"slippage": float(fills["effect"].sum()), **{c: split.get(c, 0.0) for c in CAUSES[1:]}}
    attribution["other"] += (live_pnl - replay_pnl) - sum(attribution.values())  # symbols without bars
    attribution = {k: round(v, 6) + 0.0 for k, v in attribution.items()}  # no -0.00 from float noise
    replay_path = (replay.result.equity - replay.result.cash).rename("replay")
    return Comparison(live_pnl, equity_change, replay_pnl, attribution, minutes, missed, orders, live_only, fills,
                      day.refused, live_path, replay_path)
