"""Alerts to the operator through the Apprise provider's ``openbell_notify`` Airflow connection.

:func:`openbell.alerts.notify.alert` sends one alert once per kind and key; :mod:`.callbacks` holds the
Airflow notifiers the DAG wires as task callbacks; :mod:`.summary` writes the end-of-day summary.
"""
