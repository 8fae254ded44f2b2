"""The Trading view: a page of the Airflow UI fed by Postgres LISTEN/NOTIFY over a WebSocket."""

from openbell.ui.app import create_app

__all__ = ["create_app"]
