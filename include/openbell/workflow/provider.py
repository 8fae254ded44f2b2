"""openbell as an Airflow provider: the ``apache_airflow_provider`` entry point (see pyproject.toml).

Airflow reads this in every component to learn the ``alpaca`` connection type, its hook (what the UI's
"Test connection" button calls) and how the connection form is labelled. It must stay cheap to import:
no Airflow, no alpaca-py, only data.
"""

from __future__ import annotations

from typing import Any

ALPACA_CONN_TYPE = "alpaca"
ALPACA_HOOK = "openbell.workflow.hooks.AlpacaHook"
ALPACA_HOOK_NAME = "Alpaca"

# The connection form: login and password relabelled, unused fields hidden. paper/feed/simulator_url stay in
# the JSON extra ({"paper": true, "feed": "iex"} or {"simulator_url": "http://127.0.0.1:5055"}), where
# 'paper' is parsed strictly: a form checkbox would write a 'paper' nobody typed.
ALPACA_FIELD_BEHAVIOUR: dict[str, Any] = {
    "hidden-fields": ["host", "schema", "port"],
    "relabeling": {"login": "Key ID", "password": "Secret"},
    "placeholders": {
        "login": "APCA-API-KEY-ID",
        "password": "APCA-API-SECRET-KEY",
    },
}


def get_provider_info() -> dict[str, Any]:
    """Provider metadata in Airflow's ``provider_info.schema.json`` shape."""
    return {
        "package-name": "openbell",
        "name": "openbell",
        "description": "Trades one NYSE session on Alpaca: the Alpaca connection type and its hook.",
        "connection-types": [
            {
                "connection-type": ALPACA_CONN_TYPE,
                "hook-class-name": ALPACA_HOOK,
                "hook-name": ALPACA_HOOK_NAME,
                "ui-field-behaviour": ALPACA_FIELD_BEHAVIOUR,
            }
        ],
    }
