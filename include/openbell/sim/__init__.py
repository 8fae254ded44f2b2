"""An Alpaca-compatible market and broker simulator (``openbell sim``).

Modules: :mod:`~openbell.sim.playback` (the sessions it plays, from :mod:`openbell.calendar`, and its market
time, ``MarketPlayback``), :mod:`~openbell.sim.market` (synthetic bars as a library), :mod:`~openbell.sim.feed`
(bar store, CSV, paging), :mod:`~openbell.sim.broker`, :mod:`~openbell.sim.streams`, :mod:`~openbell.sim.faults`,
:mod:`~openbell.sim.simulator` (one instance's state and market-time loop), :mod:`~openbell.sim.rest`,
:mod:`~openbell.sim.server`, :mod:`~openbell.sim.cli` and :mod:`~openbell.sim.testing` (``SimProcess``).
"""
