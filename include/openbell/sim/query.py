"""Parsing a REST request as Alpaca does: query booleans, integers, times and symbol lists, strict JSON bodies;
a bad value is refused with Alpaca's status (400 or 422) and message."""

from __future__ import annotations

import json
import math
from datetime import UTC, date, datetime
from typing import Any, NoReturn

from aiohttp import web

from openbell.sim.errors import ApiError, bad_request, unprocessable
from openbell.sim.feed import BarStore


def q_bool(request: web.Request, name: str, default: bool = False) -> bool:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    low = raw.strip().lower()
    if low in ("true", "1"):
        return True
    if low in ("false", "0"):
        return False
    raise unprocessable(f"invalid {name}: {raw!r} (expected true or false)")


def q_int(request: web.Request, name: str, default: int, lo: int, hi: int, code_400: bool = False) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        v = int(raw)
    except ValueError:
        v = lo - 1
    if not lo <= v <= hi:
        msg = f"invalid {name}: {raw!r} (expected an integer from {lo} to {hi})"
        raise bad_request(msg) if code_400 else unprocessable(msg)
    return v


def parse_time(raw: str, name: str, code_400: bool = True) -> datetime:
    """RFC 3339 or YYYY-MM-DD; naive values are UTC, as in Alpaca's API."""
    try:
        if len(raw) == 10:
            d = date.fromisoformat(raw)
            return datetime(d.year, d.month, d.day, tzinfo=UTC)
        t = datetime.fromisoformat(raw.replace(" ", "+"))
    except ValueError:
        msg = f"invalid {name}: {raw!r}"
        raise bad_request(msg) if code_400 else unprocessable(msg) from None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def q_time(request: web.Request, name: str, code_400: bool = True) -> datetime | None:
    raw = request.query.get(name)
    return parse_time(raw, name, code_400) if raw else None


def check_symbols(store: BarStore, raw: str | None) -> list[str]:
    """Parse a comma-separated symbol list; unknown symbols are a 400."""
    syms = [s.strip().upper() for s in (raw or "").split(",") if s.strip()]
    if not syms:
        raise bad_request("missing symbols")
    unknown = [s for s in syms if not store.known(s)]
    if unknown:
        raise ApiError(400, 40010000, f"invalid symbol(s): {', '.join(unknown)}")
    return syms


def _finite_float(text: str) -> float:
    v = float(text)
    if not math.isfinite(v):
        raise ValueError(f"number out of range: {text}")
    return v


def _no_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


async def json_body(request: web.Request) -> Any:
    """The request's JSON body (None when empty); strict JSON: no NaN or infinite numbers (400)."""
    raw = await request.read()
    try:
        return json.loads(raw, parse_float=_finite_float, parse_constant=_no_constant) if raw else None
    except ValueError:
        raise bad_request("request body format is invalid") from None
