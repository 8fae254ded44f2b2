"""The execution-token check at the trading task's start, against Airflow's own renewal rule."""

from __future__ import annotations

import pytest

from openbell.workflow.deployment import check_execution_token, renewal_window, token_problem

DEFAULTS = {("execution_api", "jwt_expiration_time"): 600, ("api_auth", "jwt_leeway"): 10,
            ("workers", "min_heartbeat_interval"): 5}


def _settings(**changed: int) -> dict[tuple[str, str], int]:
    out = dict(DEFAULTS)
    for dotted, value in changed.items():
        section, key = dotted.split("__")
        out[(section, key)] = value
    return out


def test_the_renewal_window_matches_airflows_middleware() -> None:
    assert renewal_window(600, 10) == 130  # the last 20% of ten minutes, plus the leeway
    assert renewal_window(60, 10) == 40  # never less than 30 s
    assert renewal_window(20, 10) == 30  # a token shorter than 30 s is renewed on every request


@pytest.mark.parametrize("changed", [{}, {"execution_api__jwt_expiration_time": 30},
                                     {"execution_api__jwt_expiration_time": 86400}])
def test_settings_whose_heartbeats_renew_the_token_pass(changed: dict[str, int]) -> None:
    settings = _settings(**changed)
    assert token_problem(lambda s, k: settings[(s, k)]) is None


def test_a_heartbeat_slower_than_the_renewal_window_is_refused_naming_the_setting() -> None:
    settings = _settings(workers__min_heartbeat_interval=130)
    problem = token_problem(lambda s, k: settings[(s, k)])
    assert problem and "min_heartbeat_interval (130 s)" in problem
    assert "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL" in problem


def test_the_check_reads_airflows_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    monkeypatch.delenv("AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL", raising=False)
    check_execution_token()  # Airflow's defaults pass
    monkeypatch.setenv("AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL", "700")
    with pytest.raises(AirflowFailException, match="min_heartbeat_interval"):
        check_execution_token()
