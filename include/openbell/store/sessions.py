"""The phase of a trading session, shared between tasks that run at the same time."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Engine, func, select
from sqlalchemy.dialects.postgresql import insert

from openbell.store.models import PHASES, TradingSession


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
