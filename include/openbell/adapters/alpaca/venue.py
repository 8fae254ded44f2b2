"""The one factory of Alpaca's ports: the live loop, the Airflow steps, the Trading view and the drills get
them here, so a second broker is a second factory, not an edit of the core."""

from __future__ import annotations

from openbell.adapters.alpaca.broker import AlpacaBroker
from openbell.adapters.alpaca.config import AlpacaConfig
from openbell.adapters.alpaca.data import AlpacaMarketData
from openbell.adapters.alpaca.streams import AlpacaStreams
from openbell.ports import Venue


def alpaca_venue(config: AlpacaConfig, *, attempts: int = 6) -> Venue:
    """The broker, market-data and stream ports on ``config``'s connection; ``attempts`` bounds the broker's
    retries of a transient failure (1: none, for a view that must answer at once)."""
    return Venue(broker=AlpacaBroker(config, attempts=attempts), market_data=AlpacaMarketData(config),
                 streams=AlpacaStreams(config))
