"""Connection settings: the account and the state database are never chosen by accident."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from openbell.adapters.alpaca.config import LIVE_TRADING_URL, PAPER_TRADING_URL, AlpacaConfig, endpoint_kind


@pytest.mark.parametrize(("paper", "expected"), [(True, True), (False, False), ("true", True), (" False ", False)])
def test_paper_accepts_a_boolean_or_true_false(paper: Any, expected: bool) -> None:
    config = AlpacaConfig.from_extra("key", "secret", {"paper": paper})
    assert config.paper is expected
    client = config.trading_client()
    assert client._base_url == (PAPER_TRADING_URL if expected else LIVE_TRADING_URL)


def test_paper_is_the_default() -> None:
    assert AlpacaConfig.from_extra("key", "secret", {}).paper is True


@pytest.mark.parametrize("paper", ["flase", None, "paper", "0", "no", "", 0, 1, [], ["false"], {"x": 1}, 0.0])
def test_anything_else_is_refused_naming_the_field(paper: Any) -> None:
    with pytest.raises(ValueError, match=r"connection 'alpaca_default': extra field 'paper' must be true or false"):
        AlpacaConfig.from_extra("key", "secret", {"paper": paper})


# -- the paper flag and the trading URL must agree ------------------------------------------------------

LIVE_HOSTS = ["https://api.alpaca.markets", "HTTPS://API.ALPACA.MARKETS/", "https://api.alpaca.markets:443/v2",
              "http://api.alpaca.markets", "api.alpaca.markets", "https://api.alpaca.markets./",
              " https://Api.Alpaca.Markets "]
PAPER_HOSTS = ["https://paper-api.alpaca.markets", "HTTPS://PAPER-API.ALPACA.MARKETS/",
               "https://paper-api.alpaca.markets:443/v2/", "paper-api.alpaca.markets", "wss://paper-api.alpaca.markets."]


@pytest.mark.parametrize("paper", [True, "true", None])
@pytest.mark.parametrize("url", LIVE_HOSTS)
def test_paper_with_a_trading_url_on_the_live_host_is_refused(url: str, paper: Any) -> None:
    extra = {"trading_url": url} if paper is None else {"paper": paper, "trading_url": url}  # absent: paper
    with pytest.raises(ValueError) as refused:
        AlpacaConfig.from_extra("key-id-123", "secret-456", extra, "alpaca_x")
    message = str(refused.value)
    assert "connection 'alpaca_x'" in message and "'paper' is true" in message
    assert "trading_url" in message and url.strip() in message and "api.alpaca.markets" in message
    assert "nothing was sent" in message and "key-id-123" not in message and "secret-456" not in message


@pytest.mark.parametrize("paper", [False, "false"])
@pytest.mark.parametrize("url", PAPER_HOSTS)
def test_live_with_a_trading_url_on_the_paper_host_is_refused(url: str, paper: Any) -> None:
    with pytest.raises(ValueError) as refused:
        AlpacaConfig.from_extra("key", "secret", {"paper": paper, "trading_url": url})
    message = str(refused.value)
    assert "connection 'alpaca_default'" in message and "'paper' is false" in message
    assert url.strip() in message and "paper-api.alpaca.markets" in message and "nothing was sent" in message


def test_the_trade_updates_stream_and_a_simulator_url_must_agree_too() -> None:
    with pytest.raises(ValueError, match=r"'paper' is true.*trade_stream_url 'wss://api.alpaca.markets/stream'"):
        AlpacaConfig.from_extra("key", "secret", {"trade_stream_url": "wss://api.alpaca.markets/stream"})
    with pytest.raises(ValueError, match=r"'paper' is false.*trade_stream_url"):
        AlpacaConfig.from_extra("key", "secret", {"paper": False, "trade_stream_url": "WSS://paper-api.alpaca.markets/stream"})
    with pytest.raises(ValueError, match=r"simulator \(paper\).*simulator_url 'https://api.alpaca.markets'"):
        AlpacaConfig.from_extra("key", "secret", {"simulator_url": "https://api.alpaca.markets"})


def test_a_url_shown_in_a_refusal_never_carries_credentials() -> None:
    url = "https://key-id-123:secret-456@API.alpaca.markets/v2?token=secret-789#frag"
    with pytest.raises(ValueError) as refused:
        AlpacaConfig.from_extra("key-id-123", "secret-456", {"trading_url": url})
    message = str(refused.value)
    assert "https://***@API.alpaca.markets/v2" in message
    assert not any(s in message for s in ("key-id-123", "secret-456", "secret-789", "frag"))


def test_every_way_of_building_the_config_is_checked() -> None:
    """``openbell airflow --live`` flips the flag with dataclasses.replace: a paper URL cannot go live that way."""
    paper = AlpacaConfig.from_extra("key", "secret", {"trading_url": PAPER_TRADING_URL})
    with pytest.raises(ValueError, match="'paper' is false"):
        dataclasses.replace(paper, paper=False)
    with pytest.raises(ValueError, match="'paper' is true"):
        AlpacaConfig("key", "secret", paper=True, trading_url=LIVE_TRADING_URL)
    # the explicit opt-in for live stays: paper=false with Alpaca's live URL or no URL at all
    default = AlpacaConfig.from_extra("key", "secret", {})
    assert dataclasses.replace(default, paper=False).trading_client()._base_url == LIVE_TRADING_URL
    live = AlpacaConfig.from_extra("key", "secret", {"paper": False, "trading_url": "https://API.alpaca.markets/"})
    assert live.paper is False


@pytest.mark.parametrize(
    ("paper", "extra"),
    [
        (True, {"trading_url": PAPER_TRADING_URL}),
        (False, {"trading_url": LIVE_TRADING_URL, "trade_stream_url": "wss://api.alpaca.markets/stream"}),
        (True, {"trading_url": "http://127.0.0.1:5055"}),
        (True, {"trading_url": "http://localhost:5055/"}),
        (True, {"trading_url": "http://[::1]:5055"}),
        (False, {"trading_url": "http://127.0.0.1:5055"}),  # a local stand-in for the live API, as today
        (True, {"simulator_url": "http://simulator:5055"}),  # the compose file's simulator
        # market data is one host for paper and live keys: its URLs never choose an account
        (True, {"data_url": "https://data.alpaca.markets", "stream_url": "wss://stream.data.alpaca.markets/v2/iex"}),
        (True, {"data_url": LIVE_TRADING_URL}),
        (False, {"data_url": PAPER_TRADING_URL}),
        # look-alikes are not Alpaca's hosts
        (True, {"trading_url": "https://api.alpaca.markets.example.net"}),
        (False, {"trading_url": "https://my-paper-api.alpaca.markets"}),
    ],
)
def test_agreeing_or_unrelated_urls_are_accepted(paper: bool, extra: dict[str, Any]) -> None:
    config = AlpacaConfig.from_extra("key", "secret", {"paper": paper, **extra})
    assert config.paper is paper or "simulator_url" in extra


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("https://api.alpaca.markets", "live"),
        ("HTTPS://API.ALPACA.MARKETS:443/v2/", "live"),
        ("wss://api.alpaca.markets./stream", "live"),
        ("api.alpaca.markets", "live"),
        ("https://paper-api.alpaca.markets", "paper"),
        ("paper-api.alpaca.markets:443", "paper"),
        ("http://127.0.0.1:5055", "local"),
        ("http://127.9.9.9", "local"),
        ("http://LOCALHOST:1", "local"),
        ("http://sim.localhost", "local"),
        ("http://[::1]:5055", "local"),
        ("http://[::ffff:127.0.0.1]:5055", "local"),
        ("http://simulator:5055", "other"),
        ("https://data.alpaca.markets", "other"),
        ("https://api.alpaca.markets.example.net", "other"),
        ("https://api\u3002alpaca.markets", "live"),  # an ideographic full stop is a dot to IDNA
        ("http://[::1", "other"),  # does not parse
        ("", "other"),
    ],
)
def test_an_endpoint_is_known_by_its_host(url: str, kind: str) -> None:
    assert endpoint_kind(url) == kind


def _state_url(env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """``steps.state_url()`` in a fresh process (Airflow reads its secrets settings once)."""
    code = "from openbell.workflow.steps import state_url; print(state_url())"
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "OPENBELL_DATABASE_URL"))}
    base.update(AIRFLOW_HOME=str(tmp_path / "airflow"), PYTHONPATH=str(tmp_path), **env)
    return subprocess.run([sys.executable, "-c", code], env=base, capture_output=True, text=True, timeout=120)


def test_state_database_comes_from_the_connection_else_the_environment(tmp_path: Path) -> None:
    fallback = "postgresql+psycopg2://user:secret-pw@127.0.0.1:5/fallback"
    got = _state_url({"AIRFLOW_CONN_OPENBELL_DB": "postgresql://user:secret-pw@127.0.0.1:6/conn",
                      "OPENBELL_DATABASE_URL": fallback}, tmp_path)
    assert got.returncode == 0, got.stderr
    assert got.stdout.strip().splitlines()[-1] == "postgresql+psycopg2://user:secret-pw@127.0.0.1:6/conn"
    absent = _state_url({"OPENBELL_DATABASE_URL": fallback}, tmp_path)
    assert absent.returncode == 0, absent.stderr
    assert absent.stdout.strip().splitlines()[-1] == fallback


def test_a_failing_connection_lookup_never_falls_back(tmp_path: Path) -> None:
    """A secrets backend that refuses is an error, not "no connection": no second database is used."""
    (tmp_path / "denying_backend.py").write_text(textwrap.dedent("""
        from airflow.sdk.exceptions import AirflowSecretsBackendAccessDenied
        from airflow.secrets import BaseSecretsBackend

        class Denying(BaseSecretsBackend):
            def get_connection(self, conn_id):
                raise AirflowSecretsBackendAccessDenied(f"access to {conn_id} denied")
    """))
    got = _state_url({"AIRFLOW__SECRETS__BACKEND": "denying_backend.Denying",
                      "OPENBELL_DATABASE_URL": "postgresql+psycopg2://user:secret-pw@127.0.0.1:5/fallback"}, tmp_path)
    assert got.returncode != 0
    assert "fallback" not in got.stdout
    assert "denied" in got.stderr
