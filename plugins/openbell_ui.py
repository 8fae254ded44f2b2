"""openbell's Trading view in the Airflow UI: the app under ``/openbell`` and a "Trading" nav entry."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from openbell.ui import create_app


class OpenbellUIPlugin(AirflowPlugin):
    """The ``openbell_ui`` plugin: the page checks Airflow's login and read access to the account's
    ``trading_day[_<name>]`` itself; its controls trigger the account's ``trading_control[_<name>]`` through
    Airflow's REST API, where Airflow's permissions decide. A run's tab shows the account of the run's DAG."""

    name = "openbell_ui"
    fastapi_apps = [{"app": create_app(), "url_prefix": "/openbell", "name": "openbell Trading view"}]  # noqa: RUF012
    external_views = [  # noqa: RUF012
        {"name": "Trading", "href": "/openbell/", "destination": "nav", "url_route": "trading",
         "icon": "/openbell/static/icon.svg"},
        {"name": "Trading", "href": "/openbell/?run_id={RUN_ID}&dag_id={DAG_ID}", "destination": "dag_run",
         "url_route": "trading_run", "icon": "/openbell/static/icon.svg"},
    ]
