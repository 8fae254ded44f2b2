"""The market-data port on Alpaca's historical bars (split-adjusted by default, the connection's feed)."""

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
from openbell.store.models import ADJUSTMENTS


class AlpacaMarketData:
    """:class:`~openbell.ports.MarketDataPort` on Alpaca (or the simulator); one raw-data client per thread.

    Bars come ``adjustment``-adjusted ("split": every split made up to the request divides the prices of
    the bars before it, so history runs on across a split; dividends are not adjusted), and each frame
    names it in ``attrs["adjustment"]`` for the store to record.
    """

    def __init__(self, config: AlpacaConfig, adjustment: str = "split") -> None:
        if adjustment not in ADJUSTMENTS:
            raise ValueError(f"adjustment must be one of {', '.join(ADJUSTMENTS)}, got {adjustment!r}")
        self.config = config
        self.adjustment = adjustment
        self._local = threading.local()

    def __repr__(self) -> str:
        return f"AlpacaMarketData({self.config!r}, adjustment={self.adjustment!r})"

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
            return self._tagged(pd.DataFrame(columns=list(BAR_COLUMNS)))
        request = StockBarsRequest(
            symbol_or_symbols=list(symbols),
            timeframe=TimeFrame.Minute,
            start=window.start,
            end=window.end - timedelta(microseconds=1),
            adjustment=Adjustment(self.adjustment),
            feed=DataFeed(self.config.feed),
        )
        raw: dict[str, list[dict[str, Any]]] = call(
            self.client.get_stock_bars, request, what="get_stock_bars", conn_id=self.config.conn_id
        )
        return self._tagged(bars_frame(raw))

    def _tagged(self, frame: pd.DataFrame) -> pd.DataFrame:
        frame.attrs["adjustment"] = self.adjustment
        return frame

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
