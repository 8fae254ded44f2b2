"""The market-data port on Alpaca's historical bars (raw, unadjusted, the connection's feed)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import pandas as pd
from alpaca.data.enums import Adjustment, DataFeed
from alpaca.data.historical import StockHistoricalDataClient
from alpaca.data.requests import StockBarsRequest
from alpaca.data.timeframe import TimeFrame

from openbell.adapters.alpaca.config import AlpacaConfig
from openbell.adapters.alpaca.retry import call, error_message
from openbell.ports import Window
from openbell.store.bars import BAR_COLUMNS


class AlpacaMarketData:
    """:class:`~openbell.ports.MarketDataPort` on Alpaca (or the simulator); one raw-data client per thread."""

    def __init__(self, config: AlpacaConfig) -> None:
        self.config = config
        self._local = threading.local()

    def __repr__(self) -> str:
        return f"AlpacaMarketData({self.config!r})"

    @property
    def client(self) -> StockHistoricalDataClient:
        """This thread's data client (raw answers: no model per bar)."""
        client: StockHistoricalDataClient | None = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = self.config.data_client(raw_data=True)
        return client

    def bars(self, symbols: Sequence[str], window: Window) -> pd.DataFrame:
        """All 1-minute bars of ``symbols`` whose start lies in ``window`` (the SDK pages for us)."""
        if window.end <= window.start or not symbols:
            return pd.DataFrame(columns=list(BAR_COLUMNS))
        request = StockBarsRequest(
            symbol_or_symbols=list(symbols),
            timeframe=TimeFrame.Minute,
            start=window.start,
            end=window.end - timedelta(microseconds=1),
            adjustment=Adjustment.RAW,
            feed=DataFeed(self.config.feed),
        )
        raw: dict[str, list[dict[str, Any]]] = call(
            self.client.get_stock_bars, request, what="get_stock_bars", conn_id=self.config.conn_id
        )
        return bars_frame(raw)

    def describe(self, exc: BaseException) -> str:
        return error_message(exc)


def bars_frame(raw: dict[str, list[dict[str, Any]]]) -> pd.DataFrame:
    """Alpaca's raw ``{symbol: [{t,o,h,l,c,v,n,vw}]}`` as a long frame with openbell's column names."""
    frames = []
    for symbol, rows in raw.items():
        if not rows:
            continue
        df = pd.DataFrame.from_records(rows)
        df["symbol"] = symbol
        frames.append(df)
    if not frames:
        return pd.DataFrame(columns=list(BAR_COLUMNS))
    df = pd.concat(frames, ignore_index=True)
    df = df.rename(
        columns={"t": "timestamp", "o": "open", "h": "high", "l": "low", "c": "close", "v": "volume",
                 "n": "trade_count", "vw": "vwap"}
    )
    for col in ("trade_count", "vwap"):
        if col not in df:
            df[col] = None
    df["timestamp"] = pd.to_datetime(df["timestamp"], utc=True, format="ISO8601")
    return df[list(BAR_COLUMNS)]
