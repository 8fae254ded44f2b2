"""Several accounts on one state database: the view shows one at a time (``?account=NAME``), each from its own
schema and its own notification channels, to the users Airflow lets read that account's trading_day DAG."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import websockets
from sqlalchemy import Engine, text
from ui_helpers import (
    CHROMIUM,
    CHROMIUM_FLAGS,
    COOKIE,
    PerDagAuthManager,
    airflow_token,
    good_cookie,
    no_broker,
    recv_until,
    serving,
    stand_in_login,
    ws_connect,
)
from websockets.exceptions import InvalidStatus

from dates import SESSION as DAY
from openbell.store.db import make_engine, upgrade
from openbell.store.events import record_event
from openbell.store.scope import scoped_url
from openbell.store.sessions import set_phase

ACCOUNTS = {"alpha": "alpaca_alpha", "beta": "alpaca_beta"}
DATE = DAY.isoformat()


def _order(engine: Engine, coid: str, symbol: str) -> None:
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO orders (client_order_id, session_date, symbol, side, qty, status)"
                          " VALUES (:c, :d, :s, 'buy', 3, 'new')"), {"c": coid, "d": DAY, "s": symbol})


@pytest.fixture
def accounts(state_url: str) -> Iterator[dict[str, Engine]]:
    """Schemas account_alpha and account_beta, each with an order and a phase of its own."""
    engines = {}
    for name, phase in (("alpha", "trading"), ("beta", "closed")):
        url = scoped_url(state_url, name)
        upgrade(url)
        engines[name] = make_engine(url)
        _order(engines[name], f"ob-20251120-000001-{name}", "SSO" if name == "alpha" else "TQQQ")
        set_phase(engines[name], DAY, phase)
    yield engines
    for engine in engines.values():
        engine.dispose()


@pytest.fixture
def base(state_url: str, accounts: dict[str, Engine]) -> Iterator[str]:
    from openbell.ui import create_app
    from openbell.ui.market import Market

    app = create_app(state_url, check=stand_in_login, market=Market(no_broker), heartbeat=60,
                     accounts=lambda: ACCOUNTS)
    with serving(app) as url:
        yield url


def _get(url: str, **kw: Any) -> requests.Response:
    kw.setdefault("cookies", good_cookie())
    return requests.get(url, timeout=10, **kw)


def test_each_account_shows_only_its_own_state(base: str) -> None:
    seen = {}
    for name in ("alpha", "beta"):
        body = _get(f"{base}/api/snapshot?date={DATE}&account={name}").json()
        seen[name] = ([o["client_order_id"] for o in body["orders"]], body["phase"]["phase"])
        assert _get(f"{base}/api/sessions?account={name}").json()["sessions"] == [DATE]
    assert seen == {"alpha": (["ob-20251120-000001-alpha"], "trading"),
                    "beta": (["ob-20251120-000001-beta"], "closed")}
    first = _get(f"{base}/api/snapshot?date={DATE}").json()
    assert first["phase"]["phase"] == "trading"  # no account asked for: the first one the user may see
    me = _get(f"{base}/api/me?account=beta").json()
    assert me["accounts"] == ["alpha", "beta"] and me["account"] == "beta"
    assert me["control"]["dag_id"] == "trading_control_beta"
    assert me["control"]["path"] == "api/v2/dags/trading_control_beta/dagRuns"
    assert _get(f"{base}/api/me").json()["account"] == "alpha"
    for dag_id, shown in (("trading_day_beta", "beta"), ("trading_control_beta", "beta"), ("trading_day", "alpha"),
                          ("trading_day_gamma", "alpha"), ("other", "alpha")):  # a DAG run's tab in the Airflow UI
        assert _get(f"{base}/api/me?dag_id={dag_id}").json()["account"] == shown, dag_id


def test_a_dag_names_its_account() -> None:
    from openbell.ui.accounts import account_of_dag

    assert account_of_dag("trading_day", {None: "alpaca_default"}) == (True, None)
    assert account_of_dag("trading_control", {None: "alpaca_default"}) == (True, None)
    assert account_of_dag("trading_day_alpha", {None: "alpaca_default"}) == (False, None)
    assert account_of_dag("trading_day_alpha", ACCOUNTS) == (True, "alpha")
    assert account_of_dag("trading_day", ACCOUNTS) == (False, None)
    assert account_of_dag(None, ACCOUNTS) == (False, None)


def test_a_notification_reaches_only_its_accounts_clients(base: str, accounts: dict[str, Engine]) -> None:
    ws = base.replace("http://", "ws://") + f"/ws?date={DATE}&account="

    def is_row(m: dict[str, Any]) -> bool:
        return m["type"] == "row"

    async def scenario() -> None:
        async with ws_connect(ws + "alpha") as alpha, ws_connect(ws + "beta") as beta:
            snaps = [await recv_until(c, lambda m: m["type"] == "snapshot") for c in (alpha, beta)]
            assert [s["data"]["phase"]["phase"] for s in snaps] == ["trading", "closed"]
            await asyncio.to_thread(_order, accounts["alpha"], "ob-20251120-000002-alpha", "SSO")
            await asyncio.to_thread(record_event, accounts["alpha"], DAY, "stream_restart", {"stream": "bars"})
            await asyncio.to_thread(_order, accounts["beta"], "ob-20251120-000002-beta", "TQQQ")
            got = await recv_until(alpha, is_row)
            assert got["table"] == "orders" and got["row"]["client_order_id"] == "ob-20251120-000002-alpha"
            assert (await recv_until(alpha, is_row))["row"]["kind"] == "stream_restart"
            got = await recv_until(beta, is_row)  # beta's first row is its own: alpha's two never came
            assert got["table"] == "orders" and got["row"]["client_order_id"] == "ob-20251120-000002-beta"
            with pytest.raises(TimeoutError):
                await recv_until(alpha, is_row, timeout=0.5)

    asyncio.run(scenario())


def test_an_unknown_account_is_not_found(base: str) -> None:
    for path in ("/api/snapshot", "/api/sessions", "/api/me", "/"):
        got = _get(f"{base}{path}?account=gamma")
        assert got.status_code == 404, path
        assert got.json()["detail"] == "no account named 'gamma' in the Trading view"

    async def attempt() -> None:
        async with ws_connect(base.replace("http://", "ws://") + "/ws?account=gamma") as ws:
            await ws.recv()

    with pytest.raises(InvalidStatus) as refused:
        asyncio.run(attempt())
    assert refused.value.response.status_code == 404
    assert b"gamma" in refused.value.response.body


def test_without_an_accounts_file_there_is_the_default_account_only(monkeypatch: pytest.MonkeyPatch,
                                                                    served) -> None:
    from openbell.ui.accounts import file_accounts

    monkeypatch.delenv("OPENBELL_ACCOUNTS", raising=False)
    assert file_accounts() == {None: "alpaca_default"}
    me = _get(f"{served.base}/api/me").json()
    assert (me["account"], me["accounts"], me["control"]["dag_id"]) == (None, [None], "trading_control")
    assert _get(f"{served.base}/api/snapshot?account=alpha").status_code == 404


@pytest.fixture
def airflow_base(state_url: str, accounts: dict[str, Engine], airflow_auth: PerDagAuthManager) -> Iterator[str]:
    """The app as the plugin mounts it (Airflow's auth manager decides), over the two accounts."""
    from openbell.ui import create_app
    from openbell.ui.market import Market

    app = create_app(state_url, market=Market(no_broker), heartbeat=60, accounts=lambda: ACCOUNTS)
    with serving(app) as url:
        yield url


def test_a_user_airflow_does_not_let_read_betas_dag_does_not_see_beta(airflow_base: str,
                                                                       airflow_auth: PerDagAuthManager) -> None:
    airflow_auth.denied["alice"] = {"trading_day_beta"}
    airflow_auth.denied["nobody"] = {"trading_day_alpha", "trading_day_beta"}
    alice, trader = airflow_token(airflow_auth, "alice", role="user"), airflow_token(airflow_auth, "trader")
    me = _get(f"{airflow_base}/api/me", cookies={COOKIE: alice}).json()
    assert (me["accounts"], me["account"]) == (["alpha"], "alpha")
    assert me["control"] == {"allowed": True, "dag_id": "trading_control_alpha",
                             "path": "api/v2/dags/trading_control_alpha/dagRuns",
                             "actions": ["halt", "flatten", "resume"]}
    assert ("alice", "POST", "trading_control_alpha") in airflow_auth.asked
    assert _get(f"{airflow_base}/api/me", cookies={COOKIE: trader}).json()["accounts"] == ["alpha", "beta"]
    for path in ("/", "/api/sessions", f"/api/snapshot?date={DATE}", "/api/me"):
        join = "&" if "?" in path else "?"
        assert _get(f"{airflow_base}{path}{join}account=alpha", cookies={COOKIE: alice}).status_code == 200, path
        refused = _get(f"{airflow_base}{path}{join}account=beta", cookies={COOKIE: alice})
        assert refused.status_code == 403, path
        assert _get(f"{airflow_base}{path}{join}account=beta", cookies={COOKIE: trader}).status_code == 200, path
    assert "trading_day_beta" in _get(f"{airflow_base}/api/me?account=beta", cookies={COOKIE: alice}).json()["detail"]
    assert _get(f"{airflow_base}/api/me", cookies={COOKIE: airflow_token(airflow_auth, "nobody")}).status_code == 403

    ws = airflow_base.replace("http://", "ws://") + f"/ws?date={DATE}&account="

    async def snapshot(url: str, token: str) -> dict[str, Any]:
        async with websockets.connect(url, additional_headers={"Cookie": f"{COOKIE}={token}"},
                                      open_timeout=10) as sock:
            return await recv_until(sock, lambda m: m["type"] == "snapshot")

    assert asyncio.run(snapshot(ws + "alpha", alice))["data"]["phase"]["phase"] == "trading"
    with pytest.raises(InvalidStatus) as refused_ws:
        asyncio.run(snapshot(ws + "beta", alice))
    assert refused_ws.value.response.status_code == 403


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium is not installed (make test installs it)")
def test_the_page_offers_a_picker_that_switches_accounts(base: str) -> None:
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS)
        try:
            context = browser.new_context()
            context.add_cookies([{"name": COOKIE, "value": good_cookie()[COOKIE], "domain": "127.0.0.1", "path": "/"}])
            page = context.new_page()
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(f"{base}/?date={DATE}", wait_until="domcontentloaded")
            page.wait_for_function("() => window.openbell.account === 'alpha'"
                                   " && document.getElementById('phase').textContent === 'trading'", timeout=20_000)
            page.wait_for_selector("#account", state="visible", timeout=10_000)
            assert page.text_content("#control-dag") == "trading_control_alpha"
            page.select_option("#account", "beta")
            page.wait_for_function("() => document.getElementById('phase').textContent === 'closed'", timeout=10_000)
            assert "ob-20251120-000001-beta" in page.text_content("#orders")
            assert "account=beta" in page.url and f"date={DATE}" in page.url
            assert page.text_content("#control-dag") == "trading_control_beta"
        finally:
            browser.close()
    assert errors == []


def test_an_account_that_never_traded_shows_nothing_never_the_default_accounts_rows(state_url: str,
                                                                                  engine: Engine) -> None:
    from openbell.store.db import account_names
    from openbell.ui import create_app
    from openbell.ui.market import Market

    _order(engine, "ob-20251120-000001-SPY", "SPY")  # the default account's, from before the accounts file
    set_phase(engine, DAY, "closed")
    app = create_app(state_url, check=stand_in_login, market=Market(no_broker), heartbeat=60,
                     accounts=lambda: {"gamma": "alpaca_gamma"})
    with serving(app) as base:
        body = _get(f"{base}/api/snapshot?date={DATE}&account=gamma").json()
    assert body["orders"] == [] and (body["phase"] or {}).get("phase") is None, body
    assert account_names(state_url) == ["gamma"]  # its schema, created on first sight
