"""Preparation before the loop trades (blocking): reconcile with the broker, the warmup's bars with no
gap at the open, the account as the broker holds it, the assets' terms (fractions, short sales) once per day,
and the day's starting equity for the loss limit."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime

import pandas as pd
from sqlalchemy import Engine

from openbell.broker import book
from openbell.broker.ids import parse_client_order_id
from openbell.broker.reconcile import ReconcileReport, reconcile
from openbell.calendar import Session, previous_sessions
from openbell.ports import BrokerPort, MarketDataPort, Window
from openbell.store.bars import load_bars, upsert_bars
from openbell.store.scope import account_of
from openbell.store.sessions import RiskRecord, get_phase, get_risk, record_open_equity, set_phase
from openbell.strategy import Bar, RiskGate
from openbell.trading.attempt_report import AttemptReport
from openbell.trading.barcheck import BarCheck
from openbell.trading.minutes import warm_frame
from openbell.trading.phasewatch import WINDING_DOWN
from openbell.trading.portfolio import Portfolio

log = logging.getLogger(__name__)


class Preparation:
    """The steps of a live attempt's preparation, in the order :meth:`TradingAttempt.prepare` runs them."""

    def __init__(
        self,
        broker: BrokerPort,
        data: MarketDataPort,
        engine: Engine,
        session: Session,
        universe: Sequence[str],
        report: AttemptReport,
        *,
        warmup_sessions: int,
    ) -> None:
        self._broker = broker
        self._data = data
        self._engine = engine
        self._day = session
        self.d = session.date
        self._universe = universe
        self._report = report
        self._warmup_sessions = warmup_sessions
        self.account_equity: float | None = None  # the broker's, when the account was loaded

    def reconcile(self) -> tuple[int, bool]:
        """Reconcile the book with the broker and open the session's phase; returns the next decision's
        sequence number (continuing earlier attempts') and whether the session is already liquidating."""
        phase = get_phase(self._engine, self.d)
        winding_down = phase in WINDING_DOWN  # leave the liquidation's orders alone
        rec: ReconcileReport = reconcile(self._broker, self._engine, self.d, cancel_foreign=not winding_down)
        self._report.reconcile = rec.as_dict()
        with self._engine.connect() as conn:
            seq = max(rec.max_decision_seq, book.max_decision_seq(conn, self.d)) + 1
        if phase in (None, "pre_open"):
            s = self._day
            set_phase(self._engine, self.d, "trading", open_at=s.open, close_at=s.close)
        return seq, phase in WINDING_DOWN

    def history(self, until: datetime) -> pd.DataFrame:
        """Stored bars of the last sessions and today before ``until``, as the frame a strategy warms up on (in
        time order); today's minutes stored for no symbol (a crashed attempt's gap) fetched by REST from the
        first of them."""
        prior = previous_sessions(self.d, self._warmup_sessions)
        start = prior[0].open if prior else self._day.open
        frame = load_bars(self._engine, self._universe, start, until)
        expected = [m for m in self._day.minutes() if m < pd.Timestamp(until)]
        if expected:
            today = frame[frame["timestamp"] >= pd.Timestamp(self._day.open)]
            # a minute with a bar of no symbol at all is missing data; a symbol alone without a bar had no trades
            have = set(today["timestamp"])
            holes = [m for m in expected if m not in have]
            if holes:
                lo = min(holes).to_pydatetime()
                fetched = self._data.bars(self._universe, Window(lo, until))
                if len(fetched):
                    upsert_bars(self._engine, fetched, source="rest")
                    self._report.refills += 1
                    self._report.refilled_bars += len(fetched)
                    frame = load_bars(self._engine, self._universe, start, until)
        return warm_frame(frame)

    def load_account(
        self, portfolio: Portfolio, barcheck: BarCheck, warm_bars: list[Bar]
    ) -> None:
        """The broker's cash, positions and open orders; last prices from the warmup (else the broker).

        The warmup's bars (stored refills, corrections, late bars) pass the streamed bars' checks in time
        order before they may set a price: a bad stored print must not trip the loss stop on a restart."""
        account = self._broker.account()
        positions = self._broker.positions()
        self.account_equity = account.equity
        portfolio.cash = account.cash
        refused = 0
        for b in warm_bars:  # in time order
            if barcheck.refusal(b) is None:
                portfolio.prices[b.symbol] = b.close
            else:
                refused += 1
        self._report.bars_refused += refused
        for p in positions:
            portfolio.positions[p.symbol] = p.qty
            if p.current_price is not None and p.symbol not in portfolio.prices:
                portfolio.prices[p.symbol] = p.current_price
        account = account_of(self._engine.url)  # whose ids are ours
        for o in self._broker.orders("open"):
            # an order still working from an earlier attempt (or the liquidation) counts as working; a notional
            # one (no qty at the broker) for the shares its dollars buy at the last price
            price = portfolio.prices.get(o.symbol) or o.filled_avg_price
            qty = o.qty if o.qty is not None else (o.notional or 0.0) / price if price else 0.0
            key = parse_client_order_id(o.client_order_id)  # another account's id: no decision of ours
            portfolio.adopt_working(o.client_order_id, o.symbol, o.side, qty, o.filled_qty or 0.0,
                                    key.decision_seq if key and key.account == account else -2)

    def asset_terms(self) -> tuple[frozenset[str], frozenset[str]]:
        """(fractionable, shortable and easy to borrow): the universe's symbols as the broker's assets say,
        recorded in the report (``asset_terms``). An asset the broker does not know or cannot tell about counts as
        neither: whole shares, no short."""
        fractionable: set[str] = set()
        shortable: set[str] = set()
        for symbol in self._universe:
            try:
                terms = self._broker.asset_terms(symbol)
            except Exception as exc:
                log.warning("asset %s unreadable (%s): whole shares and no short sale today", symbol,
                            self._broker.describe(exc))
                continue
            if terms is None or not terms.tradable:
                continue
            if terms.fractionable:
                fractionable.add(symbol)
            if terms.shortable and terms.easy_to_borrow:
                shortable.add(symbol)
        log.info("assets: fractionable %s; shortable and easy to borrow %s", sorted(fractionable), sorted(shortable))
        self._report.asset_terms = {"fractionable": sorted(fractionable), "shortable": sorted(shortable)}
        return frozenset(fractionable), frozenset(shortable)

    def start_day(self, gate: RiskGate, portfolio: Portfolio) -> None:
        """The loss limit counts from the broker's equity at the open: stored by the session's first attempt
        (its account when it started), read back by every later one."""
        if gate.day_start_equity is not None:
            return
        equity = self.account_equity if self.account_equity and self.account_equity > 0 else portfolio.equity()
        gate.start_day(record_open_equity(self._engine, self.d, max(equity, 1.0)))

    def risk(self) -> RiskRecord:
        """The session's risk state as stored (an earlier attempt's loss stop, an operator's halt)."""
        return get_risk(self._engine, self.d)
