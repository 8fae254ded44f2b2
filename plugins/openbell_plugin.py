"""openbell's Airflow plugin: registers the NYSE session timetable.

The DAG imports the timetable from the same module path (``openbell.workflow.timetable``): serialized DAGs
name it by that path, and a different one fails with ``TimetableNotRegistered``.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from openbell.workflow.timetable import NYSESessionTimetable


class OpenbellPlugin(AirflowPlugin):
    """The ``openbell`` plugin."""

    name = "openbell"
    timetables = [NYSESessionTimetable]  # noqa: RUF012 - AirflowPlugin declares these as class lists
