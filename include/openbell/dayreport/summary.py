"""A recorded day against its replay in a few numbers: :class:`DayResult` (the day, its replay or why there is
none, the comparison), its row over several days, and the lines ``openbell report`` prints."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import Engine

from openbell.calendar import ET
from openbell.dayreport.compare import Comparison, compare
from openbell.dayreport.live import LiveDay, load_day
from openbell.dayreport.replay import NoReplay, Replay, replay_day


@dataclass(frozen=True)
class DayResult:
    """One day: what live did (``day``), the replay or why there is none, and where they differ."""

    day: LiveDay
    replay: Replay | NoReplay
    comparison: Comparison

    @property
    def date(self) -> date:
        return self.day.session.date

    @property
    def replayed(self) -> Replay | None:
        return self.replay if isinstance(self.replay, Replay) else None

    def versions(self) -> str:
        """The parameter versions the decisions used, in order, each from its first minute."""
        d = self.day.decisions
        if d.empty:
            return "no live decision"
        firsts = d.groupby(d["version"].map(lambda v: -1 if v is None else v), sort=False)["ts"].min().sort_values()
        return ", ".join(f"{'defaults' if v == -1 else f'v{v}'} from {t.tz_convert(ET):%H:%M} ET"
                         for v, t in firsts.items())

    def row(self) -> dict[str, Any]:
        """The day's row over several days."""
        c = self.comparison
        strategy_orders = self.day.orders[self.day.orders["origin"] == "strategy"]
        return {
            "date": self.date.isoformat(),
            "live_pnl": round(c.live_pnl, 2),
            "replay_pnl": None if c.replay_pnl is None else round(c.replay_pnl, 2),
            "difference": None if c.difference is None else round(c.difference, 2),
            "attribution": {k: round(v, 2) for k, v in c.attribution.items()},
            "orders": len(strategy_orders),
            "fills": len(self.day.fills),
            "refusals": len(c.refused),
            "minutes": len(c.minutes),
            "missed_minutes": len(c.missed_minutes),
            "late_orders": c.count("late"),
            "missed_orders": c.count("missed"),
            "slippage": round(c.slippage, 2),
            "no_replay": self.replay.reason if isinstance(self.replay, NoReplay) else None,
        }


def day_result(engine: Engine, session_date: date) -> DayResult:
    """Load ``session_date``, replay it, compare the two."""
    day = load_day(engine, session_date)
    replay = replay_day(day)
    return DayResult(day, replay, compare(day, replay if isinstance(replay, Replay) else None))


def _money(x: float | None) -> str:
    return "n/a" if x is None else f"{x:+,.2f}"


def day_lines(result: DayResult) -> list[str]:
    """What the day report adds to the text report: P&L against the replay and why they differ."""
    c, s, r = result.comparison, result.day.settings, result.row()
    lines = [f"live against the replay ({s.strategy}; parameter versions: {result.versions()}):"]
    if isinstance(result.replay, NoReplay):
        lines.append(f"  no replay: {result.replay.reason}")
    elif result.replay.kinds:
        lines.append(f"  replayed with {result.replay.kinds}")
    lines.append(f"  live P&L {_money(c.live_pnl)}, replay P&L {_money(c.replay_pnl)},"
                 f" difference {_money(c.difference)}")
    if c.attribution:
        lines.append("  of which " + ", ".join(f"{k} {v:+,.2f}" for k, v in c.attribution.items()))
    lines.append(f"  minutes decided {r['minutes'] - r['missed_minutes']} of {r['minutes']}"
                 f" ({r['missed_minutes']} missed)"
                 + (f"; replay orders {len(c.orders)}: {c.count('on time')} on time, {c.count('late')} late,"
                    f" {c.count('missed')} missed" if result.replayed is not None else "")
                 + f"; refused or not sent {r['refusals']}; slippage {c.slippage:+,.2f}")
    return lines


def range_lines(results: list[DayResult], start: date, end: date, absent: list[date]) -> list[str]:
    """The per-day table over ``start``..``end``, its total, and the sessions with nothing recorded."""
    lines = [f"openbell report from {start} to {end}: live against the replay of each day", "",
             f"{'date':<12}{'live P&L':>12}{'replay P&L':>12}{'difference':>12}{'orders':>8}{'refused':>9}"
             f"{'missed min':>12}  note"]
    for res in results:
        r = res.row()
        lines.append(f"{r['date']:<12}{_money(r['live_pnl']):>12}{_money(r['replay_pnl']):>12}"
                     f"{_money(r['difference']):>12}{r['orders']:>8}{r['refusals']:>9}{r['missed_minutes']:>12}"
                     f"  {'no replay: ' + r['no_replay'] if r['no_replay'] else ''}".rstrip())
    total = totals(results)
    lines.append(f"{'total':<12}{_money(total['live_pnl']):>12}{_money(total['replay_pnl']):>12}"
                 f"{_money(total['difference']):>12}{total['orders']:>8}{total['refusals']:>9}"
                 f"{total['missed_minutes']:>12}")
    if absent:
        lines.append("nothing recorded: " + ", ".join(d.isoformat() for d in absent))
    return lines


def totals(results: list[DayResult]) -> dict[str, Any]:
    """The sums over the days (replay and difference over the days replayed)."""
    rows = [r.row() for r in results]
    replayed = [r for r in rows if r["replay_pnl"] is not None]
    return {
        "live_pnl": round(sum(r["live_pnl"] for r in rows), 2),
        "replay_pnl": round(sum(r["replay_pnl"] for r in replayed), 2) if replayed else None,
        "difference": round(sum(r["difference"] for r in replayed), 2) if replayed else None,
        **{k: sum(r[k] for r in rows) for k in ("orders", "fills", "refusals", "missed_minutes", "late_orders",
                                                "missed_orders")},
    }
