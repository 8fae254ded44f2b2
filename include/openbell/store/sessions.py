"""The phase and risk state of a trading session, shared between tasks that run at the same time."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Engine, func, select, update
from sqlalchemy.dialects.postgresql import insert

from openbell.risk.state import RISK_CAUSES, RISK_STATES
from openbell.store.events import record_event
from openbell.store.models import PHASES, TradingSession

RISK_EVENT = "risk_state"


def set_phase(
    engine: Engine,
    session_date: date,
    phase: str,
    *,
    open_at: datetime | None = None,
    close_at: datetime | None = None,
) -> None:
    """Set the session's phase (creating its row); ``open_at``/``close_at`` are kept when not given."""
    if phase not in PHASES:
        raise ValueError(f"invalid session phase {phase!r}; use one of {', '.join(PHASES)}")
    for name, value in (("open_at", open_at), ("close_at", close_at)):
        if value is not None and value.tzinfo is None:
            raise ValueError(f"{name} must be timezone-aware, got {value!r}")
    stmt = insert(TradingSession).values(session_date=session_date, phase=phase, open_at=open_at,
                                         close_at=close_at)
    changes = {"phase": stmt.excluded.phase, "updated_at": func.now()}
    if open_at is not None:
        changes["open_at"] = stmt.excluded.open_at
    if close_at is not None:
        changes["close_at"] = stmt.excluded.close_at
    with engine.begin() as conn:
        conn.execute(stmt.on_conflict_do_update(index_elements=[TradingSession.session_date], set_=changes))


def get_phase(engine: Engine, session_date: date) -> str | None:
    """The session's phase, or None when it was never set."""
    with engine.connect() as conn:
        return conn.execute(
            select(TradingSession.phase).where(TradingSession.session_date == session_date)
        ).scalar_one_or_none()


def get_session(engine: Engine, session_date: date) -> TradingSession | None:
    """The session's row (phase, open_at, close_at, updated_at), or None."""
    from sqlalchemy.orm import Session

    with Session(engine, expire_on_commit=False) as s:
        return s.get(TradingSession, session_date)


# -- the risk state --------------------------------------------------------------------------------


@dataclass(frozen=True)
class RiskRecord:
    """A session's risk state (``RISK_STATES``), why, by whom and when it was set, and its open equity;
    ``cause`` says who set it (``loss_stop``: the daily loss stop, ``operator``: ``trading_control``,
    ``strategy_failed``: the strategy failed too many minutes in a row, None: never set) and ``extra_loss`` is the
    extra loss budget (dollars) resumes after a loss stop granted today, cumulative."""

    state: str = "ACTIVE"
    reason: str | None = None
    by: str | None = None
    changed_at: datetime | None = None
    open_equity: float | None = None
    cause: str | None = None
    extra_loss: float = 0.0

    @property
    def loss_stopped(self) -> bool:
        """The daily loss stop set the state and no resume has lifted it."""
        return self.cause == "loss_stop" and self.state != "ACTIVE"

    def as_dict(self) -> dict[str, Any]:
        return {"state": self.state, "reason": self.reason, "by": self.by,
                "changed_at": self.changed_at.isoformat() if self.changed_at else None,
                "open_equity": self.open_equity, "cause": self.cause, "extra_loss": self.extra_loss}


_RISK_COLUMNS = (TradingSession.risk_state, TradingSession.risk_reason, TradingSession.risk_by,
                 TradingSession.risk_changed_at, TradingSession.open_equity, TradingSession.risk_cause,
                 TradingSession.extra_loss)


def _record(row: Any) -> RiskRecord:
    if row is None:
        return RiskRecord()
    state, reason, by, changed_at, equity, cause, extra = row
    return RiskRecord(state, reason, by, changed_at, None if equity is None else float(equity), cause,
                      float(extra or 0))


def _ensure_row(conn: Connection, session_date: date) -> None:
    conn.execute(insert(TradingSession).values(session_date=session_date, phase="pre_open")
                 .on_conflict_do_nothing(index_elements=[TradingSession.session_date]))


def get_risk(engine_or_conn: Engine | Connection, session_date: date) -> RiskRecord:
    """The session's risk state; ``ACTIVE`` with nothing else known for a session without a row."""
    query = select(*_RISK_COLUMNS).where(TradingSession.session_date == session_date)
    if isinstance(engine_or_conn, Engine):
        with engine_or_conn.connect() as conn:
            return _record(conn.execute(query).one_or_none())
    return _record(engine_or_conn.execute(query).one_or_none())


def set_risk(
    engine: Engine, session_date: date, state: str, reason: str, by: str, *, at: datetime | None = None,
    cause: str | None = None, extra_loss: float | None = None,
) -> RiskRecord:
    """Set the session's risk state (creating its row, phase ``pre_open``) and journal a ``risk_state``
    event ``{from, to, reason, by}`` (with ``cause`` and ``extra_loss`` when given) in the same transaction;
    return the new record.

    ``by`` is who decided (an Airflow user name, or ``openbell`` for its own changes); ``at`` is the market
    time of the change (default: now); ``cause`` is one of ``RISK_CAUSES`` (None: not known, stored as such);
    ``extra_loss``, when given, is the day's new cumulative extra loss budget in dollars (when not, the stored one
    is kept).
    """
    if state not in RISK_STATES:
        raise ValueError(f"invalid risk state {state!r}; use one of {', '.join(RISK_STATES)}")
    for name, value in (("reason", reason), ("by", by)):
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"a risk state change needs a non-empty {name}")
    if at is not None and at.tzinfo is None:
        raise ValueError(f"at must be timezone-aware, got {at!r}")
    if cause is not None and cause not in RISK_CAUSES:
        raise ValueError(f"invalid risk cause {cause!r}; use one of {', '.join(RISK_CAUSES)} or None")
    if extra_loss is not None and not (
        isinstance(extra_loss, int | float | Decimal) and not isinstance(extra_loss, bool)
        and math.isfinite(extra_loss) and extra_loss >= 0
    ):
        raise ValueError(f"extra_loss must be a finite number >= 0 (dollars), got {extra_loss!r}")
    where = TradingSession.session_date == session_date
    changes: dict[str, Any] = {"risk_state": state, "risk_reason": reason.strip(), "risk_by": by.strip(),
                               "risk_cause": cause, "risk_changed_at": at if at is not None else func.now(),
                               "updated_at": func.now()}
    if extra_loss is not None:
        changes["extra_loss"] = Decimal(str(extra_loss))
    with engine.begin() as conn:
        _ensure_row(conn, session_date)
        before = conn.execute(select(TradingSession.risk_state).where(where).with_for_update()).scalar_one()
        row = conn.execute(update(TradingSession).where(where).values(**changes).returning(*_RISK_COLUMNS)).one()
        record = _record(row)
        payload: dict[str, Any] = {"from": before, "to": state, "reason": record.reason, "by": record.by}
        if cause is not None:
            payload["cause"] = cause
        if extra_loss is not None:
            payload["extra_loss"] = record.extra_loss
        record_event(conn, session_date, RISK_EVENT, payload, ts=at)
    return record


def record_open_equity(engine: Engine, session_date: date, equity: float) -> float:
    """Store the broker's equity at the session's open unless one is stored already (the first write
    wins); return the stored value."""
    if not isinstance(equity, int | float | Decimal) or isinstance(equity, bool) or not float(equity) > 0:
        raise ValueError(f"open equity must be a positive number, got {equity!r}")
    where = TradingSession.session_date == session_date
    with engine.begin() as conn:
        _ensure_row(conn, session_date)
        conn.execute(update(TradingSession).where(where, TradingSession.open_equity.is_(None))
                     .values(open_equity=Decimal(str(equity)), updated_at=func.now()))
        stored = conn.execute(select(TradingSession.open_equity).where(where)).scalar_one()
    return float(stored)
