"""The live day against its replay, on the day of ``day_fixture`` whose every number is worked out by hand."""

from __future__ import annotations

import pandas as pd
import pytest
from day_fixture import ATTRIBUTION, DAY, LIVE_PNL, REPLAY_PNL, STRATEGY, seed_day
from day_fixture import minute_of as minute
from sqlalchemy import Engine

from openbell.calendar import ET
from openbell.dayreport.compare import compare
from openbell.dayreport.live import load_day
from openbell.dayreport.replay import NoReplay, Replay, replay_day, versions_in_force
from openbell.dayreport.summary import day_lines, day_result


def _replayed(engine: Engine) -> tuple[object, Replay]:
    seed_day(engine)
    day = load_day(engine, DAY)
    replay = replay_day(day)
    assert isinstance(replay, Replay), replay
    return day, replay


def test_the_replay_runs_the_recorded_strategy_with_the_version_in_force_each_minute(engine: Engine) -> None:
    day, replay = _replayed(engine)
    assert day.settings.strategy == STRATEGY and day.settings.source.startswith("recorded")
    assert replay.warmup_sessions == 1  # the stored session before the day
    v1, v2 = sorted(day.versions)
    # no live decision from 09:32 to 09:35: the version of the last decision before, v1
    assert list(replay.version_at) == [v1] * 8 + [v2] * 7
    assert {v: p["weight"] for v, p in replay.params.items()} == {v1: 0.2, v2: 0.5}
    orders = replay.result.orders
    columns = ["time", "symbol", "side", "qty", "price", "kind"]
    got = [(f"{t.tz_convert(ET):%H:%M}", *rest) for t, *rest in orders[columns].itertuples(index=False)]
    assert got == [("09:32", "AAA", "buy", 20.0, 100.0, "policy"), ("09:33", "BBB", "buy", 50.0, 50.0, "policy"),
                   ("09:36", "BBB", "sell", 50.0, 51.0, "policy"), ("09:38", "AAA", "buy", 28.0, 104.0, "policy"),
                   ("09:44", "AAA", "sell", 48.0, 107.0, "close")]
    assert replay.result.total_pnl == pytest.approx(REPLAY_PNL)


def test_the_difference_splits_into_slippage_lateness_missed_decisions_and_refusals(engine: Engine) -> None:
    day, replay = _replayed(engine)
    c = compare(day, replay)
    assert c.live_pnl == pytest.approx(LIVE_PNL)
    assert c.replay_pnl == pytest.approx(REPLAY_PNL)
    assert c.difference == pytest.approx(LIVE_PNL - REPLAY_PNL) == pytest.approx(-199.90)
    assert c.attribution == pytest.approx(ATTRIBUTION)
    assert sum(c.attribution.values()) == pytest.approx(c.difference)


def test_minutes_missed_trades_late_and_the_reason_of_each_missed_trade(engine: Engine) -> None:
    day, replay = _replayed(engine)
    c = compare(day, replay)
    assert list(c.missed_minutes) == [pd.Timestamp(minute(i)) for i in range(2, 6)]
    assert len(c.minutes) == 15
    rows = [(o.symbol, o.side, o.status, o.cause, o.delay) for o in c.orders.itertuples()]
    assert rows[0] == ("AAA", "buy", "late", "", 4.0)
    assert rows[1:] == [("BBB", "buy", "missed", "no live decision", pytest.approx(float("nan"), nan_ok=True)),
                        ("BBB", "sell", "missed", "live decided otherwise", pytest.approx(float("nan"), nan_ok=True)),
                        ("AAA", "buy", "missed", "refused by a limit", pytest.approx(float("nan"), nan_ok=True))]
    assert c.orders.loc[0, "live_minute"] == pd.Timestamp(minute(6)) and c.orders.loc[0, "live_qty"] == 19
    assert c.live_only.empty
    assert [(r.kind, r.symbol, r.qty) for r in c.refused.itertuples()] == [
        ("limit", "AAA", 29.0), ("limit", "AAA", 29.0), ("not_sent", "AAA", 29.0)]
    assert c.refused.loc[0, "why"] == "max_order_notional 3016.0 over 2500.0"


def test_each_fill_against_its_decision_price(engine: Engine) -> None:
    day, replay = _replayed(engine)
    fills = compare(day, replay).fills
    assert list(fills["reference"]) == [103.0, 107.0]  # the 09:36 decision's close; the liquidation: 09:44's
    assert list(fills["slippage"]) == pytest.approx([0.05, 0.05])  # both dearer than decided
    assert list(fills["effect"]) == pytest.approx([-0.95, -0.95])


def test_the_lines_the_report_prints(engine: Engine) -> None:
    seed_day(engine)
    lines = day_lines(day_result(engine, DAY))
    assert lines[0].startswith(f"live against the replay ({STRATEGY}; parameter versions: v1 from 09:30 ET,"
                               " v2 from 09:38 ET)")
    assert "live P&L +74.10, replay P&L +274.00, difference -199.90" in lines[1]
    assert "slippage -1.90, late -64.00, missed decisions -50.00, refused -84.00, not sent +0.00, other +0.00" \
        in lines[2]
    assert "minutes decided 11 of 15 (4 missed); replay orders 4: 0 on time, 1 late, 3 missed;" \
           " refused or not sent 3; slippage -1.90" in lines[3]


def test_a_strategy_that_no_longer_resolves_leaves_the_live_part(engine: Engine) -> None:
    seed_day(engine, strategy="gone_package.strategies:Gone")
    result = day_result(engine, DAY)
    assert isinstance(result.replay, NoReplay)
    assert result.replay.reason.startswith("the strategy 'gone_package.strategies:Gone' cannot be resolved any more")
    assert "does not import" in result.replay.reason
    c = result.comparison
    assert c.replay_pnl is None and c.difference is None and c.attribution == {}
    assert c.live_pnl == pytest.approx(LIVE_PNL) and len(c.missed_minutes) == 4
    assert "  no replay: the strategy 'gone_package.strategies:Gone' cannot be resolved" in "\n".join(day_lines(result))


def test_a_day_recorded_without_run_params_takes_the_strategy_of_its_parameter_versions(engine: Engine) -> None:
    seed_day(engine, run_params=False)
    day = load_day(engine, DAY)
    assert day.settings.strategy == STRATEGY and day.settings.source.startswith("not recorded")
    assert day.settings.universe != ("AAA", "BBB")  # the run defaults': no bar of them stored here
    assert replay_day(day) == NoReplay(f"no bars of {', '.join(day.settings.universe)} are stored for {DAY}")


def test_the_version_in_force_before_the_first_decision_is_the_first_decisions() -> None:
    minutes = pd.DatetimeIndex([pd.Timestamp(minute(i)) for i in range(4)])
    decisions = pd.DataFrame({"seq": [0, 1], "ts": [pd.Timestamp(minute(1)), pd.Timestamp(minute(3))],
                              "version": [None, 7]})
    assert list(versions_in_force(minutes, decisions)) == [None, None, None, 7]
    assert list(versions_in_force(minutes, decisions.iloc[:0])) == [None] * 4


def test_a_day_with_nothing_but_its_steps(engine: Engine) -> None:
    """A day whose live step ran without deciding (e.g. it failed before the open): no bars, no fills."""
    from openbell.dayreport.page import day_page
    from openbell.store.ledger import step

    with step(engine, DAY, "live_trading") as record:
        record.summary["run_params"] = {"strategy": STRATEGY, "universe": ["AAA", "BBB"]}
    result = day_result(engine, DAY)
    assert result.replay == NoReplay(f"no bars of AAA, BBB are stored for {DAY}")
    c = result.comparison
    assert (c.live_pnl, c.slippage, len(c.missed_minutes), len(c.minutes)) == (0.0, 0.0, 390, 390)
    assert "No replay of this day: no bars of AAA, BBB are stored" in day_page(result)
