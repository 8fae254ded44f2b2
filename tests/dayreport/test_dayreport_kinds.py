"""The replay of a day that allowed fractions or short sales trades them as the day could: fractions of the
assets the live attempt read as fractionable, short sales of those it read as shortable and easy to borrow;
every symbol when those terms were not recorded, and the report says so. The day is ``day_fixture``'s, its
strategy ``day_strategies:StepInShort`` (BBB held short from 09:33 to 09:35 ET, a quarter of the equity).

With every symbol fractionable and shortable: 09:32 buy 20 AAA at 100 (0.2 x 10,000 / 100); 09:33 sell 50 BBB
short at 50 (-0.25 x 10,020 / 50 = -50.1, a short in whole shares); 09:36 buy the 50 back at 51; 09:38 buy
0.5 x 10,030 / 104 - 20 AAA (fractions, cut to 9 decimals) at 104; 09:44 sell them all at 107.
"""

from __future__ import annotations

import pytest
from day_fixture import DAY, seed_day
from sqlalchemy import Engine

from openbell.calendar import ET
from openbell.dayreport.live import load_day
from openbell.dayreport.page import day_page
from openbell.dayreport.replay import Replay, replay_day
from openbell.dayreport.summary import day_lines, day_result
from openbell.policy import fraction_down, notional_buy
from openbell.store.ledger import step

SHORT = "day_strategies:StepInShort"
KINDS = {"fractional": True, "allow_short": True}


def _orders(replay: Replay) -> list[tuple[str, str, str, float]]:
    o = replay.result.orders
    return [(f"{t.tz_convert(ET):%H:%M}", sym, side, qty)
            for t, sym, side, qty in o[["time", "symbol", "side", "qty"]].itertuples(index=False)]


def _replayed(engine: Engine) -> Replay:
    replay = replay_day(load_day(engine, DAY))
    assert isinstance(replay, Replay), replay
    return replay


def test_without_recorded_terms_every_symbol_is_sold_short_and_sized_in_fractions(engine: Engine) -> None:
    seed_day(engine, strategy=SHORT, kinds=KINDS)
    day = load_day(engine, DAY)
    assert day.settings.fractional and day.settings.allow_short
    assert day.settings.fractionable is None and day.settings.shortable is None
    replay = _replayed(engine)
    held = fraction_down(0.5 * 10_030 / 104)
    assert _orders(replay) == [("09:32", "AAA", "buy", 20.0), ("09:33", "BBB", "sell", 50.0),
                               ("09:36", "BBB", "buy", 50.0),
                               ("09:38", "AAA", "buy", pytest.approx(held - 20, abs=1e-9)),
                               ("09:44", "AAA", "sell", pytest.approx(held, abs=1e-9))]
    assert held != int(held) and replay.result.positions["BBB"].min() == -50.0
    assert replay.result.total_pnl == pytest.approx(20 * 7 + (held - 20) * 3 - 50)
    assert replay.kinds == (
        "fractions of a share for every symbol (the assets' terms the day read are not recorded: every symbol"
        " taken as fractionable); short sales of every symbol (the assets' terms the day read are not recorded:"
        " every symbol taken as shortable)")
    result = day_result(engine, DAY)  # the comparison with live takes the short and the fractions
    assert result.comparison.replay_pnl == pytest.approx(replay.result.total_pnl)
    assert f"  replayed with {replay.kinds}" in day_lines(result)
    assert "every symbol taken as shortable" in day_page(result, footer="")


def test_the_recorded_terms_choose_the_symbols(engine: Engine) -> None:
    """AAA read as shortable only, BBB as fractionable only: AAA in whole shares, BBB's short target 0."""
    seed_day(engine, strategy=SHORT, kinds=KINDS, terms={"fractionable": ["BBB"], "shortable": ["AAA"]})
    replay = _replayed(engine)
    assert _orders(replay) == [("09:32", "AAA", "buy", 20.0), ("09:38", "AAA", "buy", 28.0),
                               ("09:44", "AAA", "sell", 48.0)]  # 0.5 x 10,080 / 104 = 48.5
    assert replay.kinds == ("fractions of a share for BBB (fractionable that day); short sales of AAA (shortable"
                            " and easy to borrow that day)")
    with step(engine, DAY, "live_trading") as record:  # a later attempt read both as both: its terms count
        record.summary["asset_terms"] = {"fractionable": ["AAA", "BBB"], "shortable": ["AAA", "BBB"]}
    assert [o[:3] for o in _orders(_replayed(engine))][:3] == [("09:32", "AAA", "buy"), ("09:33", "BBB", "sell"),
                                                                ("09:36", "BBB", "buy")]


def test_a_day_that_allowed_neither_replays_whole_shares_long_only(engine: Engine) -> None:
    seed_day(engine, strategy=SHORT, terms={"fractionable": ["AAA", "BBB"], "shortable": ["AAA", "BBB"]})
    replay = _replayed(engine)
    assert _orders(replay) == [("09:32", "AAA", "buy", 20.0), ("09:38", "AAA", "buy", 28.0),
                               ("09:44", "AAA", "sell", 48.0)]
    assert replay.kinds is None and not any("replayed with" in line for line in day_lines(day_result(engine, DAY)))


def test_a_day_of_notional_buys_replays_them_as_market_orders_for_the_shares_their_cents_buy(engine: Engine) -> None:
    seed_day(engine, strategy=SHORT, kinds={**KINDS, "order_type": "notional"})
    replay = _replayed(engine)
    dollars, shares = notional_buy(fraction_down(0.5 * 10_030 / 104) - 20, 104.0) or (0.0, 0.0)
    assert dollars == 2_934.99 and shares == 28.221057692  # 28.221153846 x 104 = 2,934.999999984, cut to cents
    assert _orders(replay) == [("09:32", "AAA", "buy", 20.0), ("09:33", "BBB", "sell", 50.0),
                               ("09:36", "BBB", "buy", 50.0),  # buying a short back goes by quantity
                               ("09:38", "AAA", "buy", shares), ("09:44", "AAA", "sell", 20.0 + shares)]
    assert replay.kinds is not None and "; notional buys of those (filled at the close as market orders of the" \
        " shares expected); short sales" in replay.kinds
