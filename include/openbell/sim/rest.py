"""REST endpoints: trading ``/v2/...``, market data ``/v2/stocks/...`` and the simulator's ``/sim/...``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import date, datetime, time
from typing import Any

import orjson
from aiohttp import web

from openbell.calendar import ET
from openbell.sim import history
from openbell.sim.accounts import Account
from openbell.sim.broker import Broker, asset_id
from openbell.sim.errors import (
    INTERNAL,
    RATE_LIMIT,
    UNAUTHORIZED,
    UNSUPPORTED_MEDIA_TYPE,
    ApiError,
    bad_request,
    not_found,
    unprocessable,
)
from openbell.sim.faults import silence_minutes
from openbell.sim.playback import next_open_close, played_sessions, session_number, sessions_between, to_utc_ns
from openbell.sim.query import check_symbols, json_body, q_bool, q_int, q_time
from openbell.sim.ratelimit import is_trading_path
from openbell.sim.simulator import Simulator
from openbell.sim.timeframes import parse_timeframe

log = logging.getLogger(__name__)
SIM: web.AppKey[Simulator] = web.AppKey("simulator")
ACCOUNT: web.RequestKey[Account] = web.RequestKey("account")
STREAM_PATHS = ("/v2/iex", "/v2/sip", "/stream")
READ_METHODS = ("GET", "HEAD")
FEEDS = ("iex", "sip", "otc", "delayed_sip", "boats", "overnight")
ADJUSTMENTS = ("raw", "split", "dividend", "spin-off", "all")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def jresp(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def err(exc: ApiError) -> web.Response:
    return jresp(exc.body(), exc.status)


def _authorize(request: web.Request) -> Account:
    key = request.headers.get("APCA-API-KEY-ID", "")
    secret = request.headers.get("APCA-API-SECRET-KEY", "")
    account = request.app[SIM].account_for(key, secret)
    if account is None:
        raise ApiError(401, UNAUTHORIZED, "request is not authorized")
    request[ACCOUNT] = account
    return account


def _broker(request: web.Request) -> Broker:
    """The broker of the account whose key the request carries."""
    return request[ACCOUNT].broker


@web.middleware
async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Auth, the request limit and faults for /v2 REST calls, auth and a JSON body for changes under /sim;
    every error becomes an Alpaca-shaped body and every Trading API answer carries the X-RateLimit-*
    headers. Reading /sim (the clock, health, fault settings) needs no key."""
    sim = request.app[SIM]
    path = request.path
    limit_headers: dict[str, str] = {}
    resp: web.StreamResponse
    try:
        if path.startswith("/sim/") and request.method not in READ_METHODS:
            _authorize(request)
            if request.content_type != "application/json":
                raise ApiError(415, UNSUPPORTED_MEDIA_TYPE, "expected Content-Type: application/json")
        elif path.startswith("/v2/") and path not in STREAM_PATHS:
            account = _authorize(request)
            if is_trading_path(path, STREAM_PATHS):
                allowed, limit_headers = account.rate.hit(account.key)
                if not allowed:
                    raise ApiError(429, RATE_LIMIT, "rate limit exceeded")
            faults = sim.faults
            if faults.rest_delay_ms > 0:
                faults.counters["rest_delayed"] += 1
                await asyncio.sleep(faults.rest_delay_ms / 1000)
            status = faults.rest_fault()
            if status == 429:
                raise ApiError(429, RATE_LIMIT, "rate limit exceeded")
            if status == 500:
                raise ApiError(500, INTERNAL, "internal server error (injected fault)")
        resp = await handler(request)
    except ApiError as exc:
        resp = err(exc)
    except web.HTTPNotFound:
        resp = jresp({"code": 40410000, "message": "endpoint not found"}, 404)
    except web.HTTPMethodNotAllowed:
        resp = jresp({"code": 40510000, "message": "method not allowed"}, 405)
    except web.HTTPException:
        raise
    except Exception:
        log.exception("unexpected error on %s %s", request.method, path)
        resp = jresp({"code": INTERNAL, "message": "internal server error"}, 500)
    resp.headers.update(limit_headers)
    return resp


# -- trading ---------------------------------------------------------------------------------------


async def account(request: web.Request) -> web.Response:
    return jresp(_broker(request).account())


async def positions(request: web.Request) -> web.Response:
    return jresp(_broker(request).list_positions())


async def position(request: web.Request) -> web.Response:
    return jresp(_broker(request).get_position(request.match_info["symbol"]))


async def close_all_positions(request: web.Request) -> web.Response:
    sim = request.app[SIM]
    cancel = q_bool(request, "cancel_orders")
    out = _broker(request).close_all(cancel)
    sim.schedule_fills()
    return jresp(out, 207)


def _q_float(request: web.Request, name: str) -> float | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    try:
        return float(raw)
    except ValueError:
        raise unprocessable(f"invalid {name}: {raw!r}") from None


async def close_position(request: web.Request) -> web.Response:
    sim = request.app[SIM]
    order = _broker(request).close_position(request.match_info["symbol"], _q_float(request, "qty"),
                                      _q_float(request, "percentage"))
    sim.schedule_fills()
    return jresp(order)


async def list_orders(request: web.Request) -> web.Response:
    q_bool(request, "nested")  # accepted and validated; simple orders have no legs
    syms = [s for s in request.query.get("symbols", "").split(",") if s.strip()]
    return jresp(_broker(request).list_orders(
        status=request.query.get("status", "open"),
        limit=q_int(request, "limit", 50, 1, 500),
        after=q_time(request, "after", code_400=False),
        until=q_time(request, "until", code_400=False),
        direction=request.query.get("direction", "desc"),
        symbols=[s.strip() for s in syms] or None,
        side=request.query.get("side"),
    ))


async def submit_order(request: web.Request) -> web.Response:
    sim = request.app[SIM]
    order = _broker(request).submit(await json_body(request))
    sim.schedule_fills()
    return jresp(order)


async def cancel_orders(request: web.Request) -> web.Response:
    return jresp(_broker(request).cancel_all(), 207)


async def get_order(request: web.Request) -> web.Response:
    q_bool(request, "nested")
    return jresp(_broker(request).get_order(request.match_info["order_id"]))


async def order_by_client_id(request: web.Request) -> web.Response:
    cid = request.query.get("client_order_id")
    if not cid:
        raise unprocessable("client_order_id is required")
    return jresp(_broker(request).get_by_client_id(cid))


async def cancel_order(request: web.Request) -> web.Response:
    _broker(request).cancel(request.match_info["order_id"])
    return web.Response(status=204)


async def clock(request: web.Request) -> web.Response:
    now = request.app[SIM].playback.now()
    is_open, nxt_open, nxt_close = next_open_close(now)
    return jresp({
        "timestamp": now.isoformat(),
        "is_open": is_open,
        "next_open": nxt_open.astimezone(ET).isoformat(),
        "next_close": nxt_close.astimezone(ET).isoformat(),
    })


def _q_date(request: web.Request, name: str) -> date | None:
    raw = request.query.get(name)
    if not raw:
        return None
    try:
        return date.fromisoformat(raw[:10])
    except ValueError:
        raise bad_request(f"invalid {name}: {raw!r} (expected YYYY-MM-DD)") from None


async def calendar(request: web.Request) -> web.Response:
    played = played_sessions()
    start = _q_date(request, "start") or played[0].date
    end = _q_date(request, "end") or played[-1].date
    if start > end:
        raise unprocessable("start must not be after end")
    out = []
    for s in sessions_between(start, end):
        o, c = s.open.astimezone(ET), s.close.astimezone(ET)
        out.append({
            "date": s.date.isoformat(),
            "open": o.strftime("%H:%M"),
            "close": c.strftime("%H:%M"),
            "session_open": "0400",
            "session_close": "2000",
            "settlement_date": played[min(session_number(s.date) + 1, len(played) - 1)].date.isoformat(),  # type: ignore[operator]
        })
    return jresp(out)


def _asset(sim: Simulator, broker: Broker, symbol: str) -> dict[str, Any]:
    info = sim.bars.symbols[symbol]
    return {
        "id": asset_id(symbol),
        "class": "us_equity",
        "exchange": info.exchange,
        "symbol": symbol,
        "name": info.name,
        "status": "active",
        "tradable": symbol not in broker.not_tradable,
        "marginable": True,
        "maintenance_margin_requirement": 30,
        "margin_requirement_long": "30",
        "margin_requirement_short": "30",
        "shortable": symbol not in broker.not_shortable,
        "easy_to_borrow": symbol not in broker.not_shortable and symbol not in broker.hard_to_borrow,
        "fractionable": symbol not in broker.not_fractionable,
        "attributes": [],
    }


async def assets(request: web.Request) -> web.Response:
    sim = request.app[SIM]
    status = request.query.get("status")
    klass = request.query.get("asset_class")
    if status not in (None, "", "active", "inactive"):
        raise unprocessable(f"invalid status: {status!r}")
    if klass not in (None, "", "us_equity", "us_option", "crypto"):
        raise unprocessable(f"invalid asset_class: {klass!r}")
    if status == "inactive" or klass not in (None, "", "us_equity"):
        return jresp([])
    return jresp([_asset(sim, _broker(request), s) for s in sorted(sim.bars.symbols)])


async def asset(request: web.Request) -> web.Response:
    sim = request.app[SIM]
    symbol = request.match_info["symbol"].upper()
    if symbol not in sim.bars.symbols:
        raise not_found(f"asset not found for {symbol}")
    return jresp(_asset(sim, _broker(request), symbol))


# -- market data -----------------------------------------------------------------------------------


def _feed(request: web.Request) -> str:
    sim = request.app[SIM]
    feed = request.query.get("feed") or ("sip" if sim.faults.sip_allowed else "iex")
    if feed not in FEEDS:
        raise bad_request(f"invalid feed: {feed!r}")
    return feed


def _bars_params(request: web.Request, symbols: list[str]) -> bytes:
    sim = request.app[SIM]
    q = request.query
    tf = parse_timeframe(q.get("timeframe", ""))
    now = sim.playback.now()
    start = q_time(request, "start") or datetime.combine(now.date(), time(0), tzinfo=ET)
    end = q_time(request, "end") or now
    if start > end:
        raise bad_request("end should not be before start")
    limit = q_int(request, "limit", 1000, 1, 10000, code_400=True)
    sort = q.get("sort", "asc")
    if sort not in ("asc", "desc"):
        raise bad_request(f"invalid sort: {sort!r}")
    feed = _feed(request)
    adjustments = {a.strip() for a in q.get("adjustment", "raw").split(",")}
    unknown = sorted(adjustments - set(ADJUSTMENTS))
    if unknown:
        raise bad_request(f"invalid adjustment: {unknown[0]!r}")
    adjust = bool(adjustments & {"split", "all"})  # no dividends are modeled: "dividend" is raw
    return history.bars_json(sim.bars, symbols, tf, to_utc_ns(start), to_utc_ns(end), limit, sort == "desc",
                             q.get("page_token") or None, to_utc_ns(now), feed, adjust)


async def stock_bars(request: web.Request) -> web.Response:
    syms = check_symbols(request.app[SIM].bars, request.query.get("symbols"))
    return web.Response(body=_bars_params(request, syms), content_type="application/json")


async def stock_bars_single(request: web.Request) -> web.Response:
    sym = check_symbols(request.app[SIM].bars, request.match_info["symbol"])[0]
    multi = orjson.loads(_bars_params(request, [sym]))
    return jresp({"bars": multi["bars"].get(sym, []), "symbol": sym, "next_page_token": multi["next_page_token"]})


async def latest_bars(request: web.Request) -> web.Response:
    sim = request.app[SIM]
    syms = check_symbols(sim.bars, request.query.get("symbols"))
    return jresp({"bars": history.latest_bars(sim.bars, syms, to_utc_ns(sim.playback.now()), _feed(request))})


# -- simulator control -----------------------------------------------------------------------------


async def sim_clock(request: web.Request) -> web.Response:
    return jresp(request.app[SIM].playback.publish())


async def sim_health(request: web.Request) -> web.Response:
    return jresp(request.app[SIM].health())


async def sim_faults(request: web.Request) -> web.Response:
    sim = request.app[SIM]
    if request.method == "POST":
        body = await json_body(request)
        sim.faults.update(body)
        sim.apply_faults()
        if isinstance(body, dict) and body.get("drop_streams_now"):
            sim.drop_streams()
        if isinstance(body, dict) and "silence_now" in body:
            sim.silence_from_next_minute(silence_minutes(body["silence_now"]))
    return jresp(sim.faults.snapshot())


def routes(app: web.Application, data_ws: Handler, trade_ws: Handler) -> None:
    r = app.router
    r.add_get("/v2/iex", data_ws)
    r.add_get("/v2/sip", data_ws)
    r.add_get("/stream", trade_ws)
    r.add_get("/v2/account", account)
    r.add_get("/v2/positions", positions)
    r.add_delete("/v2/positions", close_all_positions)
    r.add_get("/v2/positions/{symbol}", position)
    r.add_delete("/v2/positions/{symbol}", close_position)
    r.add_get("/v2/orders", list_orders)
    r.add_post("/v2/orders", submit_order)
    r.add_delete("/v2/orders", cancel_orders)
    r.add_get("/v2/orders:by_client_order_id", order_by_client_id)
    r.add_get("/v2/orders/{order_id}", get_order)
    r.add_delete("/v2/orders/{order_id}", cancel_order)
    r.add_get("/v2/clock", clock)
    r.add_get("/v2/calendar", calendar)
    r.add_get("/v2/assets", assets)
    r.add_get("/v2/assets/{symbol}", asset)
    r.add_get("/v2/stocks/bars", stock_bars)
    r.add_get("/v2/stocks/bars/latest", latest_bars)
    r.add_get("/v2/stocks/{symbol}/bars", stock_bars_single)
    r.add_get("/sim/clock", sim_clock)
    r.add_get("/sim/health", sim_health)
    r.add_get("/sim/faults", sim_faults)
    r.add_post("/sim/faults", sim_faults)


__all__ = ["SIM", "middleware", "routes"]
