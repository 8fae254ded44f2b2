"""The halted symbols kept from the data stream's status messages."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from openbell.trading.attempt_report import AttemptReport
from openbell.trading.halts import HaltWatch


class Events:
    def __init__(self) -> None:
        self.kinds: list[str] = []

    def event(self, kind: str, payload: dict[str, Any]) -> None:
        self.kinds.append(kind)


def test_a_halt_holds_a_symbol_until_trading_resumes_and_outsiders_are_ignored() -> None:
    events, report = Events(), AttemptReport(session_date="2025-11-20")
    watch = HaltWatch(["TQQQ", "SSO"], events, report)  # type: ignore[arg-type]
    watch.on_status("AAPL", "H", "T1")  # outside the universe
    assert watch.halted == set() and events.kinds == []
    watch.on_status("tqqq", "P", "LUDP")  # a LULD pause
    watch.on_status("TQQQ", "H", "LUDP")  # still halted: not a second halt
    watch.on_status("TQQQ", "Q", "")  # quoting only: not trading yet
    assert watch.halted == {"TQQQ"}
    watch.on_status("TQQQ", "T", "")
    watch.on_status("SSO", "T", "")  # trading already: nothing to record
    watch.on_status("SSO", "X", "")  # an unknown code changes nothing
    assert watch.halted == set()
    assert events.kinds == ["symbol_halted", "symbol_resumed"]
    assert [(h["symbol"], h["change"], h["reason"]) for h in report.halts] == [("TQQQ", "halted", "LUDP"),
                                                                              ("TQQQ", "resumed", "")]


# Alpaca's status codes (docs: Real-time Stock Data, "Trading Status"): Tape A and B (CTA: NYSE, NYSE Arca,
# Cboe listed) and Tape C (UTP: Nasdaq listed) have their own sets.
HALT_CODES = ["2", "H", "P", "Q"]  # CTA trading halt; UTP trading halt, volatility pause, quotation only
RESUME_CODES = ["3", "T"]  # CTA resume; UTP trading resumption
CTA_INFORMATION = ["5", "6", "7", "8", "9", "A", "C", "D", "E", "F"]  # indications, imbalances, SSR, LULD


def _watch(*symbols: str) -> tuple[HaltWatch, Events, AttemptReport]:
    events, report = Events(), AttemptReport(session_date="2025-11-20")
    return HaltWatch(list(symbols), events, report), events, report  # type: ignore[arg-type]


def test_an_arca_listed_symbol_is_halted_by_2_and_resumed_by_3() -> None:
    watch, events, report = _watch("SSO", "TQQQ")
    watch.on_status("SSO", "2", "M")  # a LULD pause on Tape B
    assert watch.halted == {"SSO"}
    watch.on_status("SSO", "3", "M")
    assert watch.halted == set()
    assert events.kinds == ["symbol_halted", "symbol_resumed"]
    assert [(h["symbol"], h["change"], h["code"]) for h in report.halts] == [("SSO", "halted", "2"),
                                                                            ("SSO", "resumed", "3")]


@pytest.mark.parametrize("code", HALT_CODES)
def test_every_halt_code_halts(code: str) -> None:
    watch, events, _ = _watch("SSO")
    watch.on_status("SSO", code, "")
    assert watch.halted == {"SSO"} and events.kinds == ["symbol_halted"]


@pytest.mark.parametrize("resume", RESUME_CODES)
@pytest.mark.parametrize("halt", HALT_CODES)
def test_every_resume_code_ends_every_halt(halt: str, resume: str) -> None:
    watch, events, _ = _watch("SDS")
    watch.on_status("SDS", halt, "")
    watch.on_status("SDS", resume, "")
    assert watch.halted == set() and events.kinds == ["symbol_halted", "symbol_resumed"]


@pytest.mark.parametrize("code", CTA_INFORMATION)
def test_informational_codes_change_nothing(code: str, caplog: pytest.LogCaptureFixture) -> None:
    watch, events, _ = _watch("UVXY", "FAS")
    watch.on_status("UVXY", "2", "P")
    watch.on_status("UVXY", code, "")  # e.g. a price indication during the halt: still halted
    watch.on_status("FAS", code, "")  # and a trading symbol stays trading
    assert watch.halted == {"UVXY"} and events.kinds == ["symbol_halted"]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING and "unknown" in r.getMessage()]


@pytest.mark.parametrize("code", ["X", "", "halted", "4", "h"])
def test_an_unknown_code_is_logged_and_ignored(code: str, caplog: pytest.LogCaptureFixture) -> None:
    watch, events, _ = _watch("TNA")
    watch.on_status("TNA", "2", "")
    with caplog.at_level(logging.WARNING, logger="openbell.trading.halts"):
        watch.on_status("TNA", code, "")
    assert watch.halted == {"TNA"} and events.kinds == ["symbol_halted"]
    assert any("unknown" in r.getMessage() and "TNA" in r.getMessage() for r in caplog.records)
