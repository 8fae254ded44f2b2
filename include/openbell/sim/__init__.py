"""An Alpaca-compatible market and broker simulator (``openbell sim``).

Modules: :mod:`~openbell.sim.playback` (the sessions it plays, from :mod:`openbell.calendar`, and its market
time, ``MarketPlayback``), :mod:`~openbell.sim.market` (synthetic bars as a library), :mod:`~openbell.sim.feed`
(the bar store, with :mod:`~openbell.sim.bars` and :mod:`~openbell.sim.csvbars`), :mod:`~openbell.sim.history`
(the bars REST serves, paged, in the timeframes of :mod:`~openbell.sim.timeframes`), the market as Alpaca
serves it (:mod:`~openbell.sim.liquidity` sparse IEX minutes, :mod:`~openbell.sim.corrections`,
:mod:`~openbell.sim.halts`, :mod:`~openbell.sim.splits`), the broker (:mod:`~openbell.sim.broker` with
:mod:`~openbell.sim.accounting` and :mod:`~openbell.sim.ordering`), :mod:`~openbell.sim.accounts` (one broker,
request budget and trade-updates stream per API key), :mod:`~openbell.sim.streams`,
:mod:`~openbell.sim.faults`, :mod:`~openbell.sim.ratelimit`, :mod:`~openbell.sim.simulator` (one instance's
state and market-time loop), :mod:`~openbell.sim.rest`, :mod:`~openbell.sim.server`, :mod:`~openbell.sim.cli`
and :mod:`~openbell.sim.testing` (``SimProcess``).
"""
