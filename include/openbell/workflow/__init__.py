"""The Airflow-facing package and composition root: steps, operators, sensors, triggers, the timetable and
the hooks that own the Alpaca and state-database connections.

It builds the adapters (Alpaca clients, the state database engine) from Airflow connections and hands them
to the trading core; nothing outside this package, ``dags/`` and ``plugins/`` needs Airflow's task API.
Trigger and timetable classes are referenced by import path (``openbell.workflow.triggers``,
``openbell.workflow.timetable``) in serialized DAGs and the triggerer: moving them is a breaking change.
"""
