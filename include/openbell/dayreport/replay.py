"""The replay of a recorded day: what the strategy would have traded with every minute decided on time and
every order filled at the decided minute's close.

The strategy the day ran (:attr:`~openbell.dayreport.live.Settings.strategy`, resolved as a run resolves it:
a registered name, ``module:Class`` or an entry point) is warmed up on the stored bars of the warm-up
sessions before the day and fed the day's stored bars minute by minute (:func:`openbell.backtest.replay`),
once per parameter version the day used. Each minute takes the targets of the version in force then: that
of the last live decision at or before it (before the first decision, the first decision's); a decision
without a version ran on the run's fixed parameters, else on the strategy's defaults. The targets go through
the day's risk limits and the live order policy (:func:`openbell.backtest.trade_shares`), starting flat with
the day's opening equity, without costs, every position closed at the trading cut-off. A day that allowed
fractions or short sales is replayed with them, for the assets the day read as fractionable, or shortable and
easy to borrow (:attr:`~openbell.dayreport.live.Settings.fractionable`, ``shortable``); when those terms were
not recorded every symbol is taken as both, and :attr:`Replay.kinds` says so. A day of notional buys replays
them as market orders of the shares their dollars buy at the decided price.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from openbell import backtest
from openbell.backtest import ShareResult
from openbell.calendar import ET
from openbell.dayreport.live import LiveDay, Settings
from openbell.policy import OrderPolicy
from openbell.strategy import InvalidParams, RiskLimits, build, resolve
from openbell.strategy.data import prepare

Version = int | None


@dataclass(frozen=True)
class Replay:
    """The replayed day: ``result`` (orders of kind ``policy`` before the cut-off, ``close`` at it; equity and
    positions after each minute), the version in force at each minute (``version_at``), the parameters of
    each version replayed and the warm-up sessions that had stored bars; ``kinds`` how it sized and sold short
    (:func:`order_kinds`; None: whole shares, long only)."""

    result: ShareResult
    version_at: pd.Series
    params: dict[Version, dict[str, Any]]
    warmup_sessions: int
    kinds: str | None = None


@dataclass(frozen=True)
class NoReplay:
    """Why the day could not be replayed (one line)."""

    reason: str


def versions_in_force(minutes: pd.DatetimeIndex, decisions: pd.DataFrame) -> pd.Series:
    """The parameter version in force at each minute: that of the last live decision at or before it, the
    first decision's before it; None (the fixed parameters or the defaults) without decisions."""
    if decisions.empty:
        return pd.Series([None] * len(minutes), index=minutes, dtype=object, name="version")
    ordered = decisions.sort_values(["ts", "seq"], kind="stable")
    at = pd.DatetimeIndex(ordered["ts"])
    versions = [None if pd.isna(v) else int(v) for v in ordered["version"]]
    positions = at.searchsorted(minutes, side="right") - 1
    return pd.Series([versions[max(int(i), 0)] for i in positions], index=minutes, dtype=object, name="version")


UNRECORDED = "the assets' terms the day read are not recorded: every symbol taken as {}"


def order_kinds(s: Settings) -> str | None:
    """The fractions and short sales the replay trades, for which symbols and why; None: neither."""
    kinds = []
    if s.fractional:
        kinds.append(f"fractions of a share for every symbol ({UNRECORDED.format('fractionable')})"
                     if s.fractionable is None else
                     f"fractions of a share for {', '.join(s.fractionable) or 'no symbol'} (fractionable that day)")
    if s.fractional and s.order_type == "notional":
        kinds.append("notional buys of those (filled at the close as market orders of the shares expected)")
    if s.allow_short:
        kinds.append(f"short sales of every symbol ({UNRECORDED.format('shortable')})" if s.shortable is None else
                     f"short sales of {', '.join(s.shortable) or 'no symbol'} (shortable and easy to borrow that day)")
    return "; ".join(kinds) or None


def _params(day: LiveDay, version: Version) -> dict[str, Any] | None:
    if version is None:
        return day.settings.override
    if version not in day.versions:
        raise InvalidParams(f"parameter version {version} is no longer stored")
    return dict(day.versions[version]["params"])


def replay_day(day: LiveDay) -> Replay | NoReplay:
    """The replay of ``day``, or why there is none (the strategy no longer resolves or refuses the
    parameters, no stored bars, the strategy fails on them)."""
    s, name = day.settings, day.settings.strategy
    today = day.day_bars
    if today.empty:
        return NoReplay(f"no bars of {', '.join(s.universe)} are stored for {day.session.date}")
    try:
        resolve(name)
    except InvalidParams as exc:
        return NoReplay(f"the strategy {name!r} cannot be resolved any more: {exc}")
    minutes = pd.DatetimeIndex(sorted(pd.to_datetime(today["timestamp"], utc=True).unique()))
    version_at = versions_in_force(minutes, day.decisions)
    targets: dict[Version, pd.DataFrame] = {}
    params: dict[Version, dict[str, Any]] = {}
    for version in dict.fromkeys(version_at):
        try:
            strategy = build(name, _params(day, version), s.universe)
            targets[version] = backtest.replay(strategy, day.bars, warmup_until=pd.Timestamp(day.session.open))
        except InvalidParams as exc:
            return NoReplay(f"the strategy {name!r} refuses the day's parameters: {exc}")
        except Exception as exc:  # the strategy's own code failed on the stored bars
            return NoReplay(f"the strategy {name!r} failed on the stored bars: {type(exc).__name__}: {exc}")
        params[version] = strategy.params.model_dump(mode="json")
    rows = [targets[v].loc[m] for m, v in version_at.items()]
    stitched = pd.DataFrame(rows, index=minutes, columns=list(s.universe))
    data = prepare(today, s.universe)
    raw = stitched.reindex(data.times).to_numpy(dtype=float)
    limits = RiskLimits(max_weight=s.max_weight, max_gross=s.max_gross, daily_loss_limit=s.daily_loss_limit,
                        allow_short=s.allow_short, shortable=None if s.shortable is None else frozenset(s.shortable))
    first = next(iter(params.values()))
    fractional = frozenset(s.universe if s.fractionable is None else s.fractionable) if s.fractional else frozenset()
    policy = OrderPolicy(min_notional=s.min_notional, band=s.rebalance_band, fractional=fractional,
                         order_type="notional" if s.order_type == "notional" else "market")
    result = backtest.trade_shares(name, first, data, raw, warmup_sessions=0, cost_bps=0.0, limits=limits,
                                   cash=day.capital, policy=policy, close_at=[day.trade_until])
    before = pd.to_datetime(day.bars["timestamp"], utc=True)
    warm = before[before < pd.Timestamp(day.session.open)].dt.tz_convert(ET).dt.date.nunique()
    return Replay(result=result, version_at=version_at, params=params, warmup_sessions=int(warm),
                  kinds=order_kinds(s))
