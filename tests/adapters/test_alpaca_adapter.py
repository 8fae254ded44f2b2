"""What the Alpaca adapter relies on in alpaca-py, pinned: the private attributes it patches, the model fields
it converts, the parse error of a trade update. An alpaca-py upgrade that breaks one fails here. No network."""

from __future__ import annotations

import asyncio
import inspect
import json
import math
import pickle
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import msgpack
import pytest
import requests
from alpaca.common.exceptions import APIError
from alpaca.common.rest import RESTClient
from alpaca.data.historical import StockHistoricalDataClient
from alpaca.data.live import StockDataStream
from alpaca.data.live.websocket import DataStream
from alpaca.trading.client import TradingClient
from alpaca.trading.models import Asset, ClosePositionResponse, Order, Position, TradeAccount, TradeUpdate
from alpaca.trading.requests import CancelOrderResponse, GetOrdersRequest
from alpaca.trading.stream import TradingStream

from openbell.adapters.alpaca.broker import AlpacaBroker, describe
from openbell.adapters.alpaca.config import AlpacaConfig
from openbell.adapters.alpaca.convert import (
    account_report,
    order_report,
    position_report,
    price,
    read_trade_update,
    trade_notice,
    trade_report,
)
from openbell.adapters.alpaca.retry import error_message, status_of
from openbell.adapters.alpaca.streams import AlpacaStreams
from openbell.ports import BrokerRefusal, OrderReport, TradeNotice, UnreadableUpdate
from openbell.strategy import Bar

CONFIG = AlpacaConfig.for_simulator("http://127.0.0.1:9", "key-id", "secret")  # nothing listens there
ORDER: dict[str, Any] = {
    "id": "3b1f6a8e-93f4-4d37-9a7b-0b7b5d1f0e11", "client_order_id": "ob-20251120-7-TQQQ",
    "created_at": "2025-11-20T15:00:01Z", "updated_at": "2025-11-20T15:00:03Z",
    "submitted_at": "2025-11-20T15:00:02Z", "filled_at": "2025-11-20T15:00:03Z", "symbol": "TQQQ",
    "asset_class": "us_equity", "qty": "10", "notional": None, "filled_qty": "4", "filled_avg_price": "50.5",
    "order_type": "market", "type": "market", "side": "buy", "time_in_force": "day", "status": "partially_filled",
    "extended_hours": False, "order_class": "",
}
UPDATE: dict[str, Any] = {
    "event": "partial_fill", "execution_id": "0c0f5a3e-1111-4a6b-9c1d-000000000001",
    "timestamp": "2025-11-20T15:00:03Z", "price": "50.5", "qty": "4", "position_qty": "4", "order": ORDER,
}


def _signature(fn: Any) -> list[str]:
    return list(inspect.signature(fn).parameters)


# -- REST clients: what the hardening replaces ------------------------------------------------------------


def test_rest_clients_send_through_session_and_retry_by_the_retry_count() -> None:
    for cls in (TradingClient, StockHistoricalDataClient):
        client = cls("key-id", "secret")
        assert isinstance(client._session, requests.Session) and isinstance(client._retry, int)
    assert "self._retry" in inspect.getsource(RESTClient._request)
    assert "self._session.request(" in inspect.getsource(RESTClient._one_request)


def test_the_config_hardens_its_clients() -> None:
    trading, data = CONFIG.trading_client(), CONFIG.data_client()
    for client in (trading, data):
        assert client._retry == 0 and client._session.default_timeout == CONFIG.timeout
    assert str(getattr(trading._base_url, "value", trading._base_url)) == CONFIG.trading_url  # order_client reads it


def test_api_errors_give_their_status_and_message() -> None:
    error = APIError(json.dumps({"code": 40310000, "message": "potential wash trade detected"}),
                     SimpleNamespace(response=SimpleNamespace(status_code=403), request=None))
    assert (status_of(error), error_message(error)) == (403, "potential wash trade detected")
    refusal = BrokerRefusal(str(error), error_message(error), status_of(error))
    assert describe(refusal) == "potential wash trade detected" and "40310000" in str(refusal)
    assert describe(ValueError("bad")) == "ValueError: bad"


def test_an_order_listing_leaves_out_what_is_not_given() -> None:
    fields = GetOrdersRequest(status="open", after=None, limit=500).to_request_fields()
    assert "after" not in fields and fields["limit"] == 500


# -- models as reports ---------------------------------------------------------------------------------


def test_an_order_becomes_a_report_of_plain_values() -> None:
    report = order_report(Order(**ORDER))
    assert report == OrderReport(
        client_order_id="ob-20251120-7-TQQQ", broker_order_id="3b1f6a8e-93f4-4d37-9a7b-0b7b5d1f0e11",
        symbol="TQQQ", side="buy", status="partially_filled",
        created_at=datetime(2025, 11, 20, 15, 0, 1, tzinfo=UTC), qty=10.0, notional=None, filled_qty=4.0,
        filled_avg_price=50.5, submitted_at=datetime(2025, 11, 20, 15, 0, 2, tzinfo=UTC),
        filled_at=datetime(2025, 11, 20, 15, 0, 3, tzinfo=UTC), updated_at=datetime(2025, 11, 20, 15, 0, 3, tzinfo=UTC),
    )
    assert order_report(Order(**{**ORDER, "filled_qty": "", "filled_avg_price": None})).filled_qty is None


def _position(qty: str, side: str) -> Position:
    return Position(asset_id="3b1f6a8e-93f4-4d37-9a7b-0b7b5d1f0e12", symbol="SQQQ", exchange="NASDAQ",
                    asset_class="us_equity", avg_entry_price="20.5", qty=qty, side=side, cost_basis="410",
                    current_price="21")


def test_a_short_position_is_negative_whichever_sign_was_sent() -> None:
    assert position_report(_position("20", "long")).qty == 20.0
    for qty in ("-20", "20"):
        report = position_report(_position(qty, "short"))
        assert (report.symbol, report.qty, report.avg_entry_price, report.current_price) == ("SQQQ", -20.0, 20.5, 21.0)


def test_an_account_without_the_pattern_day_trader_fields_is_read() -> None:
    account = TradeAccount(id="3b1f6a8e-93f4-4d37-9a7b-0b7b5d1f0e13", account_number="PA1", status="ACTIVE",
                           cash="1000.5", equity="1200")
    assert "pattern_day_trader" in TradeAccount.model_fields and account.pattern_day_trader is None
    report = account_report(account)
    assert (report.cash, report.equity, report.status) == (1000.5, 1200.0, "ACTIVE")
    bare = account_report(TradeAccount(id="3b1f6a8e-93f4-4d37-9a7b-0b7b5d1f0e13", account_number="PA1",
                                       status="ACTIVE", cash="5"))
    assert (bare.cash, bare.equity) == (5.0, None)


def test_liquidation_answers_and_assets_carry_the_fields_read() -> None:
    assert {"status", "symbol", "body"} <= set(ClosePositionResponse.model_fields)
    assert "status" in CancelOrderResponse.model_fields and "tradable" in Asset.model_fields
    close = ClosePositionResponse(order_id=ORDER["id"], status=200, symbol="TQQQ", body=Order(**ORDER))
    assert isinstance(close.body, Order)


def test_a_trade_update_becomes_a_report() -> None:
    report = trade_report(TradeUpdate(**UPDATE))
    assert (report.event, report.execution_id, report.qty, report.price, report.position_qty) == (
        "partial_fill", UPDATE["execution_id"], 4.0, 50.5, 4.0)
    assert report.order == order_report(Order(**ORDER)) and report.timestamp == datetime(2025, 11, 20, 15, 0, 3,
                                                                                           tzinfo=UTC)
    assert read_trade_update(UPDATE) == report


def test_a_trade_update_alpaca_py_refuses_is_a_distinct_error() -> None:
    bad = {**UPDATE, "order": {**ORDER, "type": "twap", "order_type": "twap"}}  # an order type alpaca-py lacks
    with pytest.raises(Exception) as refused:
        TradeUpdate(**bad)
    assert type(refused.value).__name__ == "ValidationError"
    with pytest.raises(UnreadableUpdate, match=r"^ValidationError: ") as unreadable:
        read_trade_update(bad)
    assert isinstance(unreadable.value.__cause__, type(refused.value))


def test_a_trade_notice_reads_the_fill_without_validation() -> None:
    notice = trade_notice({"stream": "trade_updates", "data": {**UPDATE, "order": {**ORDER, "type": "twap"}}})
    assert notice == TradeNotice(event="partial_fill", client_order_id="ob-20251120-7-TQQQ", symbol="TQQQ",
                                 side="buy", status="partially_filled", execution_id=UPDATE["execution_id"], qty=4.0,
                                 price=50.5, position_qty=4.0, order_qty=10.0, filled_qty=4.0, filled_avg_price=50.5,
                                 raw=notice.raw)
    assert notice.raw["order"]["type"] == "twap"
    new = trade_notice({"stream": "trade_updates", "data": {"event": "new", "order": {**ORDER, "filled_qty": "0"}}})
    assert (new.event, new.execution_id, new.qty, new.filled_qty) == ("new", None, None, 0.0)


# -- streams: the internals the adapter patches ------------------------------------------------------------


@pytest.mark.parametrize("cls", [StockDataStream, TradingStream])
def test_stream_internals_exist_with_the_expected_shapes(cls: type) -> None:
    stream = cls("key-id", "secret")
    for name in ("_start_ws", "_run_forever", "close"):
        assert inspect.iscoroutinefunction(getattr(stream, name)) and _signature(getattr(stream, name)) == [], name
    assert inspect.iscoroutinefunction(stream._dispatch) and _signature(stream._dispatch) == ["msg"]
    assert isinstance(stream._reconnect_min_backoff, float) and isinstance(stream._reconnect_max_backoff, float)
    assert "_reconnect_min_backoff" in inspect.getsource(cls._reconnect_delay)
    assert "self._start_ws()" in inspect.getsource(cls._run_forever)
    consume = DataStream._consume if cls is StockDataStream else TradingStream._consume
    assert "self._dispatch(msg)" in inspect.getsource(consume)  # the instance's attribute: the patch is seen


class _QuietSocket:
    async def send(self, data: Any) -> None:
        pass

    async def recv(self) -> bytes:
        await asyncio.Event().wait()
        return b""

    async def close(self) -> None:
        pass


async def _fake_start_ws(self: Any) -> None:
    self.started = getattr(self, "started", 0) + 1
    self._ws = _QuietSocket()


def test_the_bar_stream_is_counted_acknowledged_and_delivers_bars(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(StockDataStream, "_start_ws", _fake_start_ws)
    seen: list[Any] = []

    async def scenario() -> None:
        streams = AlpacaStreams(CONFIG)
        handle = streams.bars(["SSO"], lambda bar, n, vw: seen.append((bar, n, vw)),
                              on_connect=lambda: seen.append("connect"), on_subscribed=lambda: seen.append("ack"),
                              backoff=(0.25, 5.0))
        stream = handle.stream
        assert (stream._reconnect_min_backoff, stream._reconnect_max_backoff) == (0.25, 5.0)
        for _ in range(100):  # _run_forever connects through the patched _start_ws
            if getattr(stream, "started", 0):
                break
            await asyncio.sleep(0.01)
        assert seen == ["connect"] and stream.started == 1
        await stream._dispatch({"T": "subscription", "bars": ["SSO"]})
        t = msgpack.Timestamp.from_datetime(datetime(2025, 11, 20, 15, 0, tzinfo=UTC))
        await stream._dispatch({"T": "b", "S": "SSO", "o": 100, "h": 101, "l": 99.5, "c": 100.5, "v": 1200, "t": t,
                                "n": 12, "vw": 100.2})
        await handle.stop()
        assert handle.task.done()

    asyncio.run(scenario())
    bar, n, vw = seen[2]
    assert seen[1] == "ack" and (n, vw) == (12, 100.2)
    assert isinstance(bar, Bar) and bar == Bar("SSO", datetime(2025, 11, 20, 15, 0, tzinfo=UTC), 100.0, 101.0, 99.5,
                                               100.5, 1200.0)
    assert math.isnan(price(None)) and math.isnan(price("x"))  # unreadable prices: the bar check refuses them


def test_the_trade_stream_reports_a_connection_once_it_listens_and_passes_raw_updates(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(TradingStream, "_start_ws", _fake_start_ws)
    seen: list[Any] = []

    async def scenario() -> None:
        handle = AlpacaStreams(CONFIG).trade_updates(seen.append, on_connect=lambda: seen.append("connected"),
                                                     backoff=(1.5, 3.0))
        stream = handle.stream
        assert stream._raw_data and (stream._reconnect_min_backoff, stream._reconnect_max_backoff) == (1.5, 3.0)
        for _ in range(100):
            if seen:
                break
            await asyncio.sleep(0.01)
        assert seen == ["connected"] and stream.started == 1  # after the original _start_ws
        await stream._dispatch({"stream": "trade_updates", "data": UPDATE})
        await handle.stop()

    asyncio.run(scenario())
    notice = seen[1]
    assert isinstance(notice, TradeNotice) and notice.raw == UPDATE and notice.execution_id == UPDATE["execution_id"]
    assert AlpacaStreams(CONFIG).read(notice.raw) == read_trade_update(UPDATE)


# -- the broker port's own mechanics -----------------------------------------------------------------------


def test_the_broker_pickles_as_its_settings_for_the_order_workers() -> None:
    broker = AlpacaBroker(CONFIG, attempts=3)
    broker.client  # noqa: B018  (a client of this thread, never pickled)
    again = pickle.loads(pickle.dumps(broker))
    assert (again.config, again.attempts) == (CONFIG, 3)
    assert "secret" not in repr(again) and again.client is not broker.client


def test_an_order_request_sends_a_quantity_a_limit_price_or_dollars() -> None:
    from openbell.adapters.alpaca.broker import _request

    fields = _request("n", "SPY", 2.5, "buy", None, 250.55).to_request_fields()
    assert fields["notional"] == 250.55 and "qty" not in fields and fields["type"] == "market"
    assert fields["time_in_force"] == "day"
    assert _request("q", "SPY", 2.5, "sell", None, None).to_request_fields()["qty"] == 2.5
    limit = _request("l", "SPY", 3, "buy", 10.01, None).to_request_fields()
    assert (limit["qty"], limit["limit_price"], limit["type"]) == (3, 10.01, "limit")
    with pytest.raises(ValueError, match="notional order is a market order"):
        _request("x", "SPY", 2.5, "buy", 10.01, 250.55)
