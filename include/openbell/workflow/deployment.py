"""Whether the Airflow a task runs in can keep a whole-session task alive: its execution token must renew.

Airflow 3 (task-sdk 1.3) renews a task's execution token in one place: the api-server's
``JWTReissueMiddleware`` answers any authenticated request made within the token's last
``max(20% of its lifetime, 30 s)`` with a fresh token (header ``Refreshed-API-Token``), which the
supervisor's client adopts. The supervisor's only regular request is its heartbeat, sent every
``[workers] min_heartbeat_interval`` seconds; a token also stays accepted ``[api_auth] jwt_leeway``
seconds past its expiry. So the token lapses mid-task exactly when the heartbeat interval is not
shorter than that window: no setting turns the renewal off, but that one can make it miss.
"""

from __future__ import annotations

from collections.abc import Callable

Setting = Callable[[str, str], int]  # (section, key) -> the value in force


def renewal_window(lifetime: int, leeway: int) -> int:
    """Seconds between the first request that renews a token of ``lifetime`` and its refusal."""
    return min(lifetime, max(int(lifetime * 0.2), 30)) + leeway


def token_problem(setting: Setting) -> str | None:
    """Why a task of these settings would lose its execution token mid-session, or None when it renews."""
    lifetime = setting("execution_api", "jwt_expiration_time")
    leeway = setting("api_auth", "jwt_leeway")
    interval = setting("workers", "min_heartbeat_interval")
    window = renewal_window(lifetime, leeway)
    if interval < window:
        return None
    return (f"Airflow's [workers] min_heartbeat_interval ({interval} s) is not shorter than the {window} s in which "
            f"the api-server renews an execution token ([execution_api] jwt_expiration_time = {lifetime} s, "
            f"[api_auth] jwt_leeway = {leeway} s): the trading task's token would lapse mid-session and Airflow "
            f"would stop it. Lower AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL below {window} (the default is 5).")


def check_execution_token() -> None:
    """Refuse, without a retry, a deployment whose execution token cannot last a session."""
    from airflow.configuration import conf
    from airflow.sdk.exceptions import AirflowFailException

    problem = token_problem(lambda section, key: conf.getint(section, key))
    if problem:
        raise AirflowFailException(problem)
