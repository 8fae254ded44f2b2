"""The account sync applies only a consistent snapshot of the broker's cash and positions."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from dates import SESSION as DAY
from dates import the_session
from openbell.ports import AccountReport, PositionReport
from openbell.trading.attempt_report import AttemptReport
from openbell.trading.context import LoopContext
from openbell.trading.portfolio import Fill, OrderIntent, Portfolio
from openbell.trading.sync import BrokerSync


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
    def on_equity(equity: float) -> None:
        pass

    sync = BrokerSync(_context(threads, None, AttemptReport(DAY)), Portfolio(), broker=broker,  # type: ignore[arg-type]
                      on_absent=lambda coid, at: None, on_equity=on_equity)
    return sync, loop


def _context(threads: Any, recorder: Any, report: AttemptReport) -> LoopContext:
    """What the sync shares with the loop's other parts: stand-ins of the threads and the recorder."""
    return LoopContext(the_session(DAY), (), None, threads, recorder, report)  # type: ignore[arg-type]


def test_a_snapshot_whose_positions_moved_while_the_cash_was_read_is_not_applied() -> None:
    held = {"TQQQ": 400.0, "AAPL": 40.0}
    sync, loop = _sync(_Broker(held, {"AAPL": 40.0}, cash=44_487.0))  # TQQQ sold after the first read
    sync.sync_account()
    assert [name for name, _ in loop.calls] == ["on_equity"]  # the broker's own equity is one document


def test_a_steady_snapshot_is_applied() -> None:
    held = {"TQQQ": 400.0, "AAPL": 40.0}
    sync, loop = _sync(_Broker(held, dict(held), cash=44_487.0))
    sync.sync_account()
    assert ("apply_sync", (44_487.0, held, 0)) in loop.calls


class _Recorder:
    def __init__(self) -> None:
        self.writes: list[Callable[[Any], None]] = []

    def write(self, fn: Callable[[Any], None]) -> None:
        self.writes.append(fn)


def _applying(portfolio: Portfolio) -> tuple[BrokerSync, _Recorder, AttemptReport]:
    recorder, report = _Recorder(), AttemptReport(DAY)
    threads = type("Threads", (), {"loop": _Loop()})()
    sync = BrokerSync(_context(threads, recorder, report), portfolio, broker=_Broker(cash=0.0),  # type: ignore[arg-type]
                      on_absent=lambda coid, at: None)
    return sync, recorder, report


def test_a_snapshot_read_before_a_fill_was_applied_is_dropped() -> None:
    """The sync's reads finish before a fill; its trade update reaches the loop before the snapshot is
    applied: the snapshot would roll the fill back and the next decision would buy again."""
    portfolio = Portfolio(cash=100_000.0)
    sync, recorder, report = _applying(portfolio)
    portfolio.add_working("ob-1", OrderIntent("SSO", "buy", 10.0, 0.1), 0)
    changes = portfolio.changes  # the sync begins its reads: the order is still working, nothing filled
    portfolio.on_fill(Fill("x-1", "ob-1", "SSO", "buy", 10.0, 100.0, position_qty=10.0))
    sync.apply_sync(100_000.0, {}, changes)  # the broker's snapshot from before the fill
    assert portfolio.positions == {"SSO": 10.0} and portfolio.cash == 99_000.0
    assert report.syncs_dropped == 1 and recorder.writes == []
    sync.apply_sync(99_000.0, {"SSO": 10.0}, portfolio.changes)  # a snapshot read after it is applied
    assert portfolio.positions == {"SSO": 10.0} and len(recorder.writes) == 1


def test_a_working_order_keeps_the_sync_from_its_symbol_only() -> None:
    """One stuck order no longer turns the sync off: every symbol without a working order is corrected."""
    portfolio = Portfolio(cash=50_000.0, positions={"SSO": 5.0, "TQQQ": 7.0, "FAS": 3.0})
    sync, recorder, report = _applying(portfolio)
    portfolio.add_working("ob-1", OrderIntent("SSO", "sell", 5.0, 0.0), 0)
    sync.apply_sync(48_000.0, {"SSO": 0.0, "TQQQ": 9.0, "TNA": 4.0}, portfolio.changes)
    assert portfolio.positions == {"SSO": 5.0, "TQQQ": 9.0, "TNA": 4.0}  # FAS gone, SSO left to its order
    assert portfolio.cash == 50_000.0  # the cash may predate the working order's fills: kept
    assert len(recorder.writes) == 1 and report.syncs_dropped == 0
