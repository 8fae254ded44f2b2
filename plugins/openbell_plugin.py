"""openbell's Airflow plugin: registers the NYSE session timetable."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from openbell.timetable import NYSESessionTimetable


class OpenbellPlugin(AirflowPlugin):
    """The ``openbell`` plugin."""

    name = "openbell"
    timetables = [NYSESessionTimetable]  # noqa: RUF012 - AirflowPlugin declares these as class lists
