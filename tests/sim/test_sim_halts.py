"""The simulator announces halts as Alpaca does: with the status codes of the symbol's tape, which its listing
exchange decides (Tape A and B: ``2`` halt, ``3`` resume; Tape C: ``H`` halt, ``P`` volatility pause, ``T``
trading resumption)."""

from __future__ import annotations

from datetime import datetime

import msgpack
import pytest

from dates import SESSION as DAY
from openbell import calendar
from openbell.sim.feed import BarStore
from openbell.sim.halts import HaltBook, parse_halt, status_message
from openbell.sim.market import UNIVERSE


def _at(hhmm: str) -> datetime:
    return datetime.fromisoformat(f"{DAY.isoformat()}T{hhmm}:00-05:00")


def test_each_symbol_of_the_universe_lists_where_it_really_lists() -> None:
    listed = {sym: spec.exchange for sym, spec in UNIVERSE.items()}
    nasdaq = {"QQQ", "TQQQ", "SQQQ", "AAPL", "MSFT"}
    cboe = {"UVXY", "SVXY"}  # moved from NYSE Arca to Cboe BZX in 2021; Alpaca calls Cboe BZX "BATS"
    assert {s for s, x in listed.items() if x == "NASDAQ"} == nasdaq
    assert {s for s, x in listed.items() if x == "BATS"} == cboe
    assert {s for s, x in listed.items() if x == "ARCA"} == set(listed) - nasdaq - cboe
    store = BarStore(seed=0)
    assert {s: store.symbols[s].exchange for s in UNIVERSE} == listed  # what /v2/assets and positions say


def _messages(halt: str, exchange: str) -> list[dict[str, object]]:
    book = HaltBook([parse_halt(halt)], calendar.session(DAY))
    [window] = next(iter(book.windows.values()))
    return [status_message(window, halted, at, exchange) for halted, at in ((True, window.start),
                                                                           (False, window.end))]


def _fields(msg: dict[str, object]) -> tuple[object, ...]:
    return msg["T"], msg["S"], msg["sc"], msg["sm"], msg["rc"], msg["rm"], msg["z"]


@pytest.mark.parametrize(("exchange", "tape"), [("ARCA", "B"), ("BATS", "B"), ("AMEX", "B"), ("NYSE", "A")])
def test_a_tape_a_or_b_symbol_is_halted_with_2_and_resumed_with_3(exchange: str, tape: str) -> None:
    halt, resume = _messages("SSO:10:00-10:05", exchange)  # a LULD pause
    assert _fields(halt) == ("s", "SSO", "2", "Trading Halt", "M", "Limit Up-Limit Down (LULD) Trading Pause", tape)
    assert _fields(resume) == ("s", "SSO", "3", "Resume", "M", "Limit Up-Limit Down (LULD) Trading Pause", tape)
    news_halt, news_resume = _messages("SSO:10:00-11:00", exchange)  # a news halt
    assert (news_halt["sc"], news_halt["rc"], news_halt["rm"]) == ("2", "P", "News Pending")
    assert (news_resume["sc"], news_resume["rc"]) == ("3", "P")
    assert halt["t"] == msgpack.Timestamp.from_datetime(_at("10:00"))
    assert resume["t"] == msgpack.Timestamp.from_datetime(_at("10:05"))


def test_a_tape_c_symbol_is_paused_with_p_halted_with_h_and_resumed_with_t() -> None:
    pause, resume = _messages("TQQQ:10:00-10:05", "NASDAQ")
    assert _fields(pause) == ("s", "TQQQ", "P", "Volatility Trading Pause", "LUDP", "Volatility Trading Pause", "C")
    assert _fields(resume) == ("s", "TQQQ", "T", "Trading Resumption", "LUDP", "Volatility Trading Pause", "C")
    halt, resume = _messages("SQQQ:10:00-11:00", "NASDAQ")
    assert _fields(halt) == ("s", "SQQQ", "H", "Trading Halt", "T1", "Halt News Pending", "C")
    assert _fields(resume) == ("s", "SQQQ", "T", "Trading Resumption", "T1", "Halt News Pending", "C")
