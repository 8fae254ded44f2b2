"""Alpaca behind openbell's ports: everything that imports alpaca-py lives in this package.

- :mod:`~openbell.adapters.alpaca.config`: connection settings and alpaca-py clients with timeouts
- :mod:`~openbell.adapters.alpaca.retry`: the retry policy and what a failure says
- :mod:`~openbell.adapters.alpaca.convert`: alpaca-py models and stream messages as the ports' reports
- :mod:`~openbell.adapters.alpaca.broker`: :class:`AlpacaBroker` (the broker port), idempotent submission
- :mod:`~openbell.adapters.alpaca.data`: :class:`AlpacaMarketData` (the market-data port)
- :mod:`~openbell.adapters.alpaca.streams`: :class:`AlpacaStreams` (the stream port) and its patches
- :mod:`~openbell.adapters.alpaca.transport`: the kept-open order connection

Import from the modules: this package's ``__init__`` stays empty so settings load without the clients.
"""
