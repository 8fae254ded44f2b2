"""The risk state on the Trading view, live; the controls only for users Airflow lets trigger trading_control,
and a click on them is a run of that DAG created by Airflow's own REST API as that user."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from ui_helpers import CHROMIUM, CHROMIUM_FLAGS, COOKIE, airflow_token, good_cookie, recv_until, ws_connect

from dates import SESSION as DAY
from openbell.store.db import make_engine
from openbell.store.sessions import set_risk

CONTROL_RUNS = "/api/v2/dags/trading_control/dagRuns"


def test_the_risk_state_is_shown_and_follows_postgres(served, state_url) -> None:
    engine = make_engine(state_url)
    body = requests.get(served.base + "/api/snapshot?date=2025-11-20", cookies=good_cookie(), timeout=10).json()
    assert body["risk"]["state"] == "ACTIVE" and body["risk"]["by"] is None

    async def scenario() -> dict[str, Any]:
        async with ws_connect(served.ws + "?date=2025-11-20") as ws:
            await recv_until(ws, lambda m: m["type"] == "snapshot")
            await asyncio.to_thread(set_risk, engine, DAY, "HALTED", "manual flatten", "trader")
            return await recv_until(ws, lambda m: m["type"] == "row" and m["table"] == "trading_sessions"
                                    and m["row"]["risk_state"] != "ACTIVE")

    row = asyncio.run(scenario())["row"]
    assert (row["risk_state"], row["risk_reason"], row["risk_by"]) == ("HALTED", "manual flatten", "trader")
    assert row["risk_changed_at"]
    again = requests.get(served.base + "/api/snapshot?date=2025-11-20", cookies=good_cookie(), timeout=10).json()
    assert again["risk"]["state"] == "HALTED" and again["risk"]["reason"] == "manual flatten"
    engine.dispose()


def test_the_controls_are_offered_only_to_users_airflow_lets_trigger(served_airflow, airflow_auth) -> None:
    airflow_auth.denied["benched"] = {"trading_control"}
    tokens = {name: airflow_token(airflow_auth, name, role=role)
              for name, role in (("trader", "user"), ("watcher", "viewer"), ("benched", "user"))}
    allowed = {}
    for name, token in tokens.items():
        me = requests.get(served_airflow.base + "/api/me", cookies={COOKIE: token}, timeout=10)
        assert me.status_code == 200, name
        assert me.json()["user"] == name
        allowed[name] = me.json()["control"]["allowed"]
    assert allowed == {"trader": True, "watcher": False, "benched": False}
    assert ("trader", "POST", "trading_control") in airflow_auth.asked
    assert requests.get(served_airflow.base + "/api/me", timeout=10).status_code == 401


# -- through a real Airflow api-server, in Chromium ---------------------------------------------------


@dataclass
class LiveAirflow:
    base: str
    tokens: dict[str, str]
    admin: str


def _login(base: str, username: str, password: str) -> str:
    got = requests.post(base + "/auth/token", json={"username": username, "password": password}, timeout=10)
    got.raise_for_status()
    return str(got.json()["access_token"])


@pytest.fixture
def live_airflow(tmp_path: Path, pg_server_url: str, state_url: str,
                 monkeypatch: pytest.MonkeyPatch) -> Iterator[LiveAirflow]:
    """Airflow's api-server (with the openbell_ui plugin) and dag-processor, no scheduler: a triggered run
    stays queued. Users: trader (role user), watcher (role viewer)."""
    import time

    from openbell.adapters.alpaca.config import AlpacaConfig
    from openbell.pg.databases import scratch_database
    from openbell.pg.throwaway import reachable_tempdir
    from openbell.runtime import airflow as runtime

    monkeypatch.setattr(runtime, "PROCESSES", ("dag-processor", "api-server"))
    home = reachable_tempdir(tmp_path, "openbell-ui-control-")
    passwords = home / "users.json"
    with scratch_database(pg_server_url, prefix="af") as metadata_url:
        stack = runtime.AirflowStack(
            home / "airflow", metadata_url, state_url, AlpacaConfig.for_simulator("http://127.0.0.1:9", "k", "s"),
            extra_env={"AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin,trader:user,watcher:viewer",
                       "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords)})
        users = {"admin": stack.admin_password, "trader": "trader-pw", "watcher": "watcher-pw"}
        passwords.write_text(json.dumps(users))
        with stack:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                found = requests.get(stack.api_url + "/api/v2/dags/trading_control", timeout=10,
                                     headers={"Authorization": f"Bearer {stack.token()}"})
                if found.status_code == 200:
                    break
                time.sleep(1)
            else:
                raise TimeoutError(f"trading_control not loaded: {stack.import_errors()}")
            tokens = {name: _login(stack.api_url, name, pw) for name, pw in users.items()}
            yield LiveAirflow(stack.api_url, tokens, tokens["admin"])


def _page(browser: Any, base: str, token: str, errors: list[str]) -> Any:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    host = base.split("//", 1)[1].split(":")[0]
    context.add_cookies([{"name": COOKIE, "value": token, "domain": host, "path": "/"}])
    page = context.new_page()
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{base}/openbell/?date={DAY.isoformat()}", wait_until="domcontentloaded")
    page.wait_for_function("() => window.openbell && window.openbell.data", timeout=60_000)
    return page


def _runs(live: LiveAirflow) -> list[dict[str, Any]]:
    got = requests.get(live.base + CONTROL_RUNS, headers={"Authorization": f"Bearer {live.admin}"}, timeout=10)
    got.raise_for_status()
    return list(got.json()["dag_runs"])


@pytest.mark.e2e
@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium is not installed (make test installs it)")
def test_controls_in_the_browser_go_through_airflow(live_airflow: LiveAirflow, state_url: str,
                                                   tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    live = live_airflow
    body = {"logical_date": None, "conf": {"action": "halt", "reason": "by hand", "session_date": None}}
    errors: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS)
        try:
            trader = _page(browser, live.base, live.tokens["trader"], errors)
            trader.wait_for_selector("#controls", state="visible", timeout=30_000)
            trader.wait_for_function("() => document.getElementById('risk').textContent === 'ACTIVE'",
                                     timeout=30_000)
            trader.select_option("#control-action", "flatten")
            trader.fill("#control-reason", "news out, flatten now")
            trader.click("#control-submit")
            trader.wait_for_function("() => document.getElementById('control-result').dataset.runId",
                                     timeout=30_000)
            run_id = trader.get_attribute("#control-result", "data-run-id")
            runs = {r["dag_run_id"]: r for r in _runs(live)}
            assert run_id in runs, (run_id, list(runs))
            run = runs[run_id]
            assert run["conf"] == {"action": "flatten", "reason": "news out, flatten now",
                                   "session_date": DAY.isoformat()}
            assert run["triggering_user_name"] == "trader" and run["run_type"] == "manual"

            watcher = _page(browser, live.base, live.tokens["watcher"], errors)
            engine = make_engine(state_url)
            set_risk(engine, DAY, "HALTED", "daily loss limit", "openbell")
            engine.dispose()
            for page in (trader, watcher):  # no reload: the change arrives over the WebSocket
                page.wait_for_function("() => document.getElementById('risk').textContent === 'HALTED'",
                                       timeout=30_000)
                assert "daily loss limit" in page.text_content("#risk-detail")
                assert page.evaluate("() => window.openbell.lastMessage > 0")
            assert watcher.is_hidden("#controls")
            assert "trading_control" in watcher.text_content("#controls-note")
            trader.screenshot(path=str(tmp_path / "trading-controls.png"), full_page=True)
        finally:
            browser.close()

    for auth in ({"cookies": {COOKIE: live.tokens["watcher"]}},
                 {"headers": {"Authorization": f"Bearer {live.tokens['watcher']}"}}):
        refused = requests.post(live.base + CONTROL_RUNS, json=body, timeout=10, **auth)
        assert refused.status_code == 403, refused.text
    assert [r["triggering_user_name"] for r in _runs(live)] == ["trader"]
    assert errors == []
