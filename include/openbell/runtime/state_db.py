"""openbell's state database as the commands read it (``openbell backtest``, ``openbell report``): an engine
of one connection, refused in the command's own words when the URL is not one or the database has no
openbell schema."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, inspect

from openbell.dberrors import redact


@contextmanager
def openbell_engine(url: str, *, table: str, refuse: Callable[[str], Exception], hint: str) -> Iterator[Engine]:
    """An engine on ``url`` (one connection), disposed on exit. Raises ``refuse(message)`` when ``url`` is not a
    database URL, and ``refuse("no openbell schema in URL: hint")`` (password hidden) when the database has no
    ``table`` of openbell's schema."""
    from openbell.store.db import make_engine

    try:
        engine = make_engine(url, pool_size=1, max_overflow=0)
    except ValueError as exc:
        raise refuse(str(exc)) from None
    try:
        if not inspect(engine).has_table(table):
            raise refuse(f"no openbell schema in {redact(url)}: {hint}")
        yield engine
    finally:
        engine.dispose()
