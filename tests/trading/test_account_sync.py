"""The account sync applies only a consistent snapshot of the broker's cash and positions."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import date
from typing import Any

from openbell.ports import AccountReport, PositionReport
from openbell.session.portfolio import Portfolio
from openbell.session.report import SessionReport
from openbell.session.sync import BrokerSync

DAY = date(2025, 11, 20)


class _Loop:
    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def call_soon_threadsafe(self, fn: Callable[..., Any], *args: Any) -> None:
        self.calls.append((fn.__name__, args))


class _Broker:
    """Answers each positions() with the next snapshot: the liquidation's sells may land between two reads."""

    def __init__(self, *snapshots: dict[str, float], cash: float) -> None:
        self._snapshots: Iterator[dict[str, float]] = iter(snapshots)
        self.cash = cash

    def describe(self, exc: BaseException) -> str:
        return str(exc)

    def positions(self) -> list[PositionReport]:
        return [PositionReport(s, q) for s, q in next(self._snapshots).items()]

    def account(self) -> AccountReport:
        return AccountReport(cash=self.cash, equity=110_000.0)


def _sync(broker: _Broker) -> tuple[BrokerSync, _Loop]:
    loop = _Loop()
    threads = type("Threads", (), {"loop": loop})()
    sync = BrokerSync(threads, None, Portfolio(), {}, SessionReport(DAY), broker=broker,  # type: ignore[arg-type]
                      session_date=DAY, on_absent=lambda coid, at: None)

    def on_equity(equity: float) -> None:
        pass

    sync.on_equity = on_equity
    return sync, loop


def test_a_snapshot_whose_positions_moved_while_the_cash_was_read_is_not_applied() -> None:
    held = {"TQQQ": 400.0, "AAPL": 40.0}
    sync, loop = _sync(_Broker(held, {"AAPL": 40.0}, cash=44_487.0))  # TQQQ sold after the first read
    sync.sync_account()
    assert [name for name, _ in loop.calls] == ["on_equity"]  # the broker's own equity is one document


def test_a_steady_snapshot_is_applied() -> None:
    held = {"TQQQ": 400.0, "AAPL": 40.0}
    sync, loop = _sync(_Broker(held, dict(held), cash=44_487.0))
    sync.sync_account()
    assert ("apply_sync", (44_487.0, held)) in loop.calls
