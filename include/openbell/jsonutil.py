"""One JSON encoder for openbell's own values (a leaf: imports nothing of openbell).

:func:`json_default` is the ``default`` hook of :func:`json.dumps` everywhere openbell writes JSON that
may hold values the standard encoder refuses: JSONB columns (:func:`openbell.store.db.json_dumps`), the
report (``openbell report --json``, ``openbell demo --json``) and the simulator's text streams.
"""

from __future__ import annotations

import datetime as dt
import decimal
from typing import Any

__all__ = ["json_default"]


def json_default(value: Any) -> Any:
    """A JSON-able stand-in for ``value``, for ``json.dumps(..., default=json_default)``.

    Dates, times and datetimes as ISO 8601 text; Decimal as text (no precision lost); sets as sorted
    lists; tuples as lists; numpy scalars and arrays as Python values; a msgpack ``Timestamp`` (the
    wire type of Alpaca's streams: not a datetime, converts with ``to_datetime()``) as RFC 3339 UTC with
    a ``Z``, as Alpaca writes it; anything else as its ``str``.
    """
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, set | frozenset | tuple):
        return sorted(value, key=str) if isinstance(value, set | frozenset) else list(value)
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item):
        return item()
    tolist = getattr(value, "tolist", None)  # numpy arrays
    if callable(tolist):
        return tolist()
    to_datetime = getattr(value, "to_datetime", None)  # msgpack.Timestamp
    if callable(to_datetime):
        return to_datetime().astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    return str(value)
