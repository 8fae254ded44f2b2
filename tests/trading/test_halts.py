"""The halted symbols kept from the data stream's status messages."""

from __future__ import annotations

from typing import Any

from openbell.session.halts import HaltWatch
from openbell.session.report import SessionReport


class Events:
    def __init__(self) -> None:
        self.kinds: list[str] = []

    def event(self, kind: str, payload: dict[str, Any]) -> None:
        self.kinds.append(kind)


def test_a_halt_holds_a_symbol_until_trading_resumes_and_outsiders_are_ignored() -> None:
    events, report = Events(), SessionReport(session_date="2025-11-20")
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
