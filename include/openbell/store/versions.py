"""Versions of strategy parameters: the newest version of a strategy is the live one."""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from openbell.store.models import PARAM_SOURCES, ParamVersion


def add_params(
    engine: Engine,
    strategy: str,
    params: dict[str, Any],
    *,
    source: str = "manual",
    session_date: date | None = None,
    score: dict[str, Any] | None = None,
) -> ParamVersion:
    """Store a new parameter version for ``strategy`` and return it (with its id)."""
    if source not in PARAM_SOURCES:
        raise ValueError(f"invalid parameter source {source!r}; use one of {', '.join(PARAM_SOURCES)}")
    if not strategy:
        raise ValueError("strategy name is empty")
    if not isinstance(params, dict):
        raise TypeError(f"params must be a dict, got {type(params).__name__}")
    version = ParamVersion(strategy=strategy, params=params, source=source, session_date=session_date,
                           score=score)
    with Session(engine, expire_on_commit=False) as s, s.begin():
        s.add(version)
        s.flush()
        s.refresh(version)
    return version


def latest_params(engine: Engine, strategy: str) -> ParamVersion | None:
    """The newest parameter version of ``strategy``, or None."""
    query = select(ParamVersion).where(ParamVersion.strategy == strategy).order_by(ParamVersion.id.desc())
    with Session(engine, expire_on_commit=False) as s:
        return s.scalars(query.limit(1)).first()


def get_params(engine: Engine, version_id: int) -> ParamVersion | None:
    """One parameter version by id."""
    with Session(engine, expire_on_commit=False) as s:
        return s.get(ParamVersion, version_id)
