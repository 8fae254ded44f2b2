"""Hooks that own openbell's two Airflow connections: the Alpaca account and the state database.

Steps, operators and the Trading view read connections only through these hooks, so each rule lives once:
how a connection becomes an :class:`~openbell.adapters.alpaca.config.AlpacaConfig`, and when ``OPENBELL_DATABASE_URL``
may stand in for the state database. ``AlpacaHook`` is also what Airflow's "Test connection" button calls
for an ``alpaca`` connection (registered by :mod:`openbell.workflow.provider`).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook

from openbell.adapters.alpaca.config import CONN_ID, AlpacaConfig, CredentialsError
from openbell.adapters.alpaca.retry import call, error_message
from openbell.workflow.provider import ALPACA_CONN_TYPE, ALPACA_FIELD_BEHAVIOUR, ALPACA_HOOK_NAME

if TYPE_CHECKING:
    from sqlalchemy import Engine

STATE_CONN_ID = "openbell_db"
DATABASE_URL_ENV = "OPENBELL_DATABASE_URL"


class AlpacaHook(BaseHook):
    """The Alpaca account (or an openbell simulator) of connection ``alpaca_conn_id``.

    Login is the API key id, password the secret; the JSON extra holds ``paper``, ``feed`` or
    ``simulator_url`` (see :meth:`AlpacaConfig.from_extra`). Secrets never reach a message.
    """

    conn_name_attr = "alpaca_conn_id"
    default_conn_name = CONN_ID
    conn_type = ALPACA_CONN_TYPE
    hook_name = ALPACA_HOOK_NAME

    def __init__(self, alpaca_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.alpaca_conn_id = alpaca_conn_id

    def get_conn(self) -> AlpacaConfig:
        """The connection's settings; refused credentials or extras raise, naming the connection."""
        return self._config(self.get_connection(self.alpaca_conn_id))

    def _config(self, conn: Any) -> AlpacaConfig:
        extra = conn.extra_dejson if conn.extra else {}
        return AlpacaConfig.from_extra(conn.login or "", conn.password or "", extra, self.alpaca_conn_id)

    def test_connection(self) -> tuple[bool, str]:
        """Ask the broker for the account: ``(True, which account and its status)`` or ``(False, why)``.

        Only ``GET /v2/account`` is sent (the client retries it on transient failures); nothing is sent when the
        ``paper`` flag disagrees with the trading URL. The message names the endpoint reached (the Trading
        API's URL, without credentials) and whether it is Alpaca's paper or live host, a simulator or another
        host; the key id and the secret are blanked from it.
        """
        secrets: list[str] = []
        try:
            conn = self.get_connection(self.alpaca_conn_id)
            secrets = [s for s in (conn.password, conn.login) if s]
            config = self._config(conn)
            account = call(config.trading_client().get_account, attempts=1, what="get_account",
                           conn_id=self.alpaca_conn_id)
        except (CredentialsError, ValueError) as exc:
            return False, _without(str(exc), secrets)
        except Exception as exc:
            return False, _without(error_message(exc), secrets)
        status = getattr(account.status, "value", account.status)
        if config.simulated:
            where = f"paper account {account.account_number} of the openbell simulator {config.endpoint()}"
        else:
            where = f"{'paper' if config.paper else 'live'} account {account.account_number} {config.endpoint()}"
        return True, _without(f"Connected to the Alpaca {where}: status {status}", secrets)

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """The connection form (Airflow 3.2+ reads the same data from the provider info)."""
        return {key.replace("-", "_"): value for key, value in ALPACA_FIELD_BEHAVIOUR.items()}

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """No extra form widgets: ``paper``, ``feed`` and ``simulator_url`` are typed in the JSON extra."""
        return {}


def _without(message: str, secrets: list[str]) -> str:
    """``message`` with the connection's key id and secret blanked (a second line of defence: the broker's
    messages never echo the request). Like Airflow's masker, values under 5 characters are left alone."""
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= 5:
            message = message.replace(secret, "***")
    return message


class StateDbHook(BaseHook):
    """The state database: the Postgres connection ``openbell_db_conn_id``, else ``OPENBELL_DATABASE_URL``.

    The environment stands in only when the connection is not defined. Any other failure to read it
    raises: advisory locks are per database, so two attempts on two databases could both trade.
    """

    conn_name_attr = "openbell_db_conn_id"
    default_conn_name = STATE_CONN_ID
    conn_type = "postgres"
    hook_name = "openbell state database"

    def __init__(self, openbell_db_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.openbell_db_conn_id = openbell_db_conn_id

    def get_uri(self) -> str:
        """The state database's SQLAlchemy URL (``postgresql+psycopg2://``)."""
        from airflow.sdk.exceptions import AirflowNotFoundException

        try:
            conn = self.get_connection(self.openbell_db_conn_id)
        except AirflowNotFoundException:
            url = os.environ.get(DATABASE_URL_ENV)
            if not url:
                raise RuntimeError(
                    f"no state database: define the Airflow connection {self.openbell_db_conn_id!r}"
                    f" or {DATABASE_URL_ENV}"
                ) from None
            return url
        uri = conn.get_uri()
        for prefix in ("postgres://", "postgresql://"):
            if uri.startswith(prefix):
                return "postgresql+psycopg2://" + uri[len(prefix) :]
        return uri

    def get_conn(self) -> Engine:
        """An engine on the state database, checked by connecting once."""
        from openbell.store.db import make_engine

        return make_engine(self.get_uri())
