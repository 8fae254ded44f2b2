"""The Trading view in real headless Chromium, logged in to Airflow, during a simulated session."""

from __future__ import annotations

import logging
import shutil
import time
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from ui_helpers import CHROMIUM, CHROMIUM_FLAGS

from openbell.pg.throwaway import reachable_tempdir
from openbell.runtime.rehearsal import Rehearsal, rehearse

pytestmark = [pytest.mark.e2e, pytest.mark.alone]  # Chromium beside the day: both cores busy
log = logging.getLogger(__name__)

WATCH_SECONDS = 150
# A parameter version that rebalances every minute, stored before trading starts, so that orders and
# positions appear while the page is watched (the defaults may rightly sit out a quiet afternoon). The
# day starts at 13:30 so trading runs on it for a while before the 14:30 optimizer may replace it.
BUSY = {"lookback": 5, "vol_window": 10, "top_k": 3, "threshold": 0.0, "rebalance_minutes": 1,
        "weighting": "score"}

COUNTS = """() => {
  const d = window.openbell && window.openbell.data;
  return {
    session: d ? d.session : null,
    orders: document.querySelectorAll('#orders tbody tr').length,
    positions: document.querySelectorAll('#positions tbody tr').length,
    points: Number(document.getElementById('equity-chart').dataset.points),
    conn: document.getElementById('conn').textContent,
    mark: window.__mark || null,
  };
}"""


def _watch(day: Rehearsal, profile: Path, shot: Path, seen: dict[str, Any]) -> None:
    """Log in through Airflow's login page, open Trading, watch the page change by itself."""
    from playwright.sync_api import sync_playwright

    from openbell.store.db import make_engine
    from openbell.store.versions import add_params

    add_params(make_engine(day.state_url), "momentum_rotation", BUSY, source="manual")

    base = day.stack.api_url
    with sync_playwright() as pw:
        browser = pw.chromium.launch_persistent_context(
            str(profile), executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS,
            viewport={"width": 1440, "height": 1000},
        )
        try:
            page = browser.new_page()
            page.goto(base + "/", wait_until="domcontentloaded")
            page.locator("input[name=username]").fill("admin")
            page.locator("input[name=password]").fill(day.stack.admin_password)
            page.locator("input[name=password]").press("Enter")
            page.wait_for_url(lambda url: "/auth/" not in url, timeout=60_000)
            page.goto(base + "/plugin/trading", wait_until="domcontentloaded")
            frame = page.wait_for_selector("iframe[title=Trading]", timeout=60_000).content_frame()
            assert frame is not None
            frame.wait_for_function("() => window.openbell && window.openbell.data", timeout=60_000)
            frame.evaluate("() => { window.__mark = 'no reload'; }")
            first = frame.evaluate(COUNTS)
            seen["first"] = first
            deadline = time.monotonic() + WATCH_SECONDS
            samples = []
            while time.monotonic() < deadline:
                now = frame.evaluate(COUNTS)
                samples.append(now)
                grew = (now["orders"] > first["orders"] and now["points"] > first["points"]
                        and max(s["positions"] for s in samples) > 0)
                if grew and now["positions"] > 0:
                    break
                time.sleep(1)
            page.screenshot(path=str(shot), full_page=True)
            seen["samples"] = samples
        finally:
            browser.close()


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium is not installed (make test installs it)")
def test_the_trading_view_updates_live(tmp_path: Path) -> None:
    home = reachable_tempdir(tmp_path, "openbell-ui-e2e-")
    shot = tmp_path / "trading-view.png"
    seen: dict[str, Any] = {}
    try:
        rehearse(date(2025, 11, 20), speed=120, start="13:30", home=home, progress=log.info,
                 on_running=lambda day: _watch(day, tmp_path / "chromium-profile", shot, seen))
    finally:
        shutil.rmtree(home, ignore_errors=True)
    print(f"\nTrading view screenshot: {shot}")
    samples, first = seen["samples"], seen["first"]
    last = samples[-1]
    assert first["session"] == "2025-11-20" or last["session"] == "2025-11-20", (first, last)
    assert last["mark"] == "no reload"  # the same document all along
    assert last["orders"] > first["orders"], (first, last)
    assert last["points"] > first["points"], (first, last)
    assert max(s["positions"] for s in samples) > 0, samples[-5:]
    assert shot.stat().st_size > 10_000
