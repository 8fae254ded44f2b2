"""A recorded day against its replay: what live trading did (``live``), what the strategy would have done with
every minute decided on time and every order filled at the decided price (``replay``), where and by how much
they differ (``compare``), in a few numbers (``summary``) and as a self-contained HTML page (``page``, drawn by
``charts``). ``openbell report --html`` (:mod:`openbell.runtime.report_cli`) writes it."""
