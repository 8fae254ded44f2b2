"""SQLAlchemy models of openbell's state database (importable without a database).

Every timestamp is ``timestamptz`` (UTC); ``session_date`` is the NYSE session date. The migrations in
``openbell/store/migrations`` create exactly these tables; a test compares the two.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Double,
    Identity,
    Index,
    Integer,
    MetaData,
    Numeric,
    Text,
    func,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from openbell.risk.state import RISK_CAUSES, RISK_STATES  # ACTIVE, REDUCING, HALTED; loss_stop, operator, ...

STEP_STATUSES = ("running", "success", "failed", "skipped")
PHASES = ("pre_open", "trading", "liquidating", "closed")
ORDER_ORIGINS = ("strategy", "adopted", "liquidation")
POSITION_ORIGINS = ("strategy", "adopted")
PARAM_SOURCES = ("default", "optimizer", "manual")
SIDES = ("buy", "sell")
ADJUSTMENTS = ("raw", "split")  # a bar's prices: as traded that day, or split-adjusted when downloaded

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    """Declarative base with a naming convention so migrations get stable constraint names."""

    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {  # noqa: RUF012
        datetime: DateTime(timezone=True),
        date: Date,
        float: Double,
        Decimal: Numeric,
        str: Text,
        dict[str, Any]: JSONB,
    }


class Bar(Base):
    """One OHLCV bar; ``ts`` is the bar's start; ``adjustment`` says which prices it holds (``ADJUSTMENTS``)."""

    __tablename__ = "bars"
    __table_args__ = (CheckConstraint(_one_of("adjustment", ADJUSTMENTS), name="adjustment"),)

    symbol: Mapped[str] = mapped_column(primary_key=True)
    ts: Mapped[datetime] = mapped_column(primary_key=True)
    open: Mapped[float]
    high: Mapped[float]
    low: Mapped[float]
    close: Mapped[float]
    volume: Mapped[float]
    trade_count: Mapped[int | None] = mapped_column(Integer)
    vwap: Mapped[float | None]
    source: Mapped[str]
    ingested_at: Mapped[datetime] = mapped_column(server_default=func.now())
    adjustment: Mapped[str] = mapped_column(server_default="raw")


class StepRun(Base):
    """The step ledger: one row per attempt of a workflow step."""

    __tablename__ = "step_runs"
    __table_args__ = (
        CheckConstraint(_one_of("status", STEP_STATUSES), name="status"),
        Index(None, "session_date", "step"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    session_date: Mapped[date]
    step: Mapped[str]
    run_id: Mapped[str] = mapped_column(server_default="")
    attempt: Mapped[int] = mapped_column(Integer, server_default="1")
    status: Mapped[str]
    started_at: Mapped[datetime] = mapped_column(server_default=func.now())
    ended_at: Mapped[datetime | None]
    summary: Mapped[dict[str, Any]] = mapped_column(server_default="{}")
    error: Mapped[str | None]


class TradingSession(Base):
    """The phase and risk state of one trading session, read by tasks running alongside each other.

    ``open_equity`` is the broker's account equity at the session's open, written once by the first
    trading attempt. ``risk_cause`` says who set the risk state (``RISK_CAUSES``; null: never set);
    ``extra_loss`` is the extra loss budget (dollars) resumes after a loss stop granted today, cumulative.
    """

    __tablename__ = "trading_sessions"
    __table_args__ = (
        CheckConstraint(_one_of("phase", PHASES), name="phase"),
        CheckConstraint(_one_of("risk_state", RISK_STATES), name="risk_state"),
        CheckConstraint(_one_of("risk_cause", RISK_CAUSES), name="risk_cause"),
        CheckConstraint("extra_loss >= 0", name="extra_loss"),
    )

    session_date: Mapped[date] = mapped_column(primary_key=True)
    phase: Mapped[str]
    open_at: Mapped[datetime | None]
    close_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())
    risk_state: Mapped[str] = mapped_column(server_default="ACTIVE")
    risk_reason: Mapped[str | None]
    risk_by: Mapped[str | None]
    risk_changed_at: Mapped[datetime | None]
    open_equity: Mapped[Decimal | None]
    risk_cause: Mapped[str | None]
    extra_loss: Mapped[Decimal] = mapped_column(server_default="0")


class Order(Base):
    """An order openbell decided (or adopted); ``client_order_id`` is deterministic."""

    __tablename__ = "orders"
    __table_args__ = (
        CheckConstraint(_one_of("origin", ORDER_ORIGINS), name="origin"),
        CheckConstraint(_one_of("side", SIDES), name="side"),
        Index(None, "session_date", "symbol"),
        Index(None, "broker_order_id"),
    )

    client_order_id: Mapped[str] = mapped_column(primary_key=True)
    session_date: Mapped[date]
    symbol: Mapped[str]
    side: Mapped[str]
    qty: Mapped[Decimal]
    notional: Mapped[Decimal | None]
    decision_seq: Mapped[int | None] = mapped_column(Integer)
    broker_order_id: Mapped[str | None]
    status: Mapped[str]
    filled_qty: Mapped[Decimal] = mapped_column(server_default="0")
    filled_avg_price: Mapped[Decimal | None]
    reason: Mapped[str | None]
    reject_reason: Mapped[str | None]
    origin: Mapped[str] = mapped_column(server_default="strategy")
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())


class Fill(Base):
    """One execution, deduplicated on the broker's ``execution_id``."""

    __tablename__ = "fills"
    __table_args__ = (
        CheckConstraint(_one_of("side", SIDES), name="side"),
        Index(None, "session_date", "symbol"),
        Index(None, "client_order_id"),
    )

    execution_id: Mapped[str] = mapped_column(primary_key=True)
    client_order_id: Mapped[str | None]
    session_date: Mapped[date]
    symbol: Mapped[str]
    side: Mapped[str]
    qty: Mapped[Decimal]
    price: Mapped[Decimal]
    ts: Mapped[datetime]


class Position(Base):
    """The position book of one session."""

    __tablename__ = "positions"
    __table_args__ = (CheckConstraint(_one_of("origin", POSITION_ORIGINS), name="origin"),)

    session_date: Mapped[date] = mapped_column(primary_key=True)
    symbol: Mapped[str] = mapped_column(primary_key=True)
    qty: Mapped[Decimal]
    avg_entry_price: Mapped[Decimal | None]
    origin: Mapped[str] = mapped_column(server_default="strategy")
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())


class ParamVersion(Base):
    """One version of a strategy's parameters; the newest one is live."""

    __tablename__ = "param_versions"
    __table_args__ = (
        CheckConstraint(_one_of("source", PARAM_SOURCES), name="source"),
        Index(None, "strategy", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    strategy: Mapped[str]
    params: Mapped[dict[str, Any]]
    source: Mapped[str]
    session_date: Mapped[date | None]
    score: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class Decision(Base):
    """The strategy's target weights at one market minute."""

    __tablename__ = "decisions"

    session_date: Mapped[date] = mapped_column(primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    ts: Mapped[datetime]
    targets: Mapped[dict[str, Any]]
    param_version_id: Mapped[int | None] = mapped_column(BigInteger)


class Signal(Base):
    """A symbol's signal score and weight at one market minute."""

    __tablename__ = "signals"

    session_date: Mapped[date] = mapped_column(primary_key=True)
    ts: Mapped[datetime] = mapped_column(primary_key=True)
    symbol: Mapped[str] = mapped_column(primary_key=True)
    score: Mapped[float | None]
    weight: Mapped[float | None]


class EquityPoint(Base):
    """Account equity at one market minute."""

    __tablename__ = "equity"

    session_date: Mapped[date] = mapped_column(primary_key=True)
    ts: Mapped[datetime] = mapped_column(primary_key=True)
    equity: Mapped[float]
    cash: Mapped[float | None]
    gross_exposure: Mapped[float | None]


class Event(Base):
    """The journal: reconcile differences, stream reconnects, refills, rejections..."""

    __tablename__ = "events"
    __table_args__ = (Index(None, "session_date", "ts"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    session_date: Mapped[date]
    ts: Mapped[datetime] = mapped_column(server_default=func.now())
    kind: Mapped[str]
    payload: Mapped[dict[str, Any]] = mapped_column(server_default="{}")


class RequestBudgetState(Base):
    """One API key's Trading API request budget on one Trading API, shared by every machine that uses the key
    (:mod:`openbell.adapters.alpaca.pg_budget`); in the shared schema only. ``budget_key`` is a hash of the key
    and the API's URL, never the key id. Times are seconds since the epoch on the database's clock:
    ``blocked_until`` (after a 429), ``stamps`` (the send times in the window, oldest first) and ``checked_at``
    (the last take, whose outcome is ``granted``)."""

    __tablename__ = "request_budget"

    budget_key: Mapped[str] = mapped_column(primary_key=True)
    blocked_until: Mapped[float] = mapped_column(server_default="0")
    stamps: Mapped[list[float]] = mapped_column(ARRAY(Double), server_default="{}")
    checked_at: Mapped[float] = mapped_column(server_default="0")
    granted: Mapped[bool] = mapped_column(Boolean, server_default="false")
