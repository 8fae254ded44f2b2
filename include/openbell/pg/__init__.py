"""Embedded PostgreSQL and database helpers for the commands, tests and benches (``openbell db``, the demo,
the drills, the report).

Modules: :mod:`~openbell.pg.server` (``EmbeddedPostgres``, a server whose files live in one directory),
:mod:`~openbell.pg.databases` (create, drop or scratch databases on any server),
:mod:`~openbell.pg.throwaway` (servers for tests, drills and benches) and :mod:`~openbell.pg.urls` (the state
and Airflow databases' URLs).
"""
