"""Headless Chromium as the page tests use it (Debian's, as ``make browser`` installs it): a page drawn, its
requests watched, a screenshot kept under ``artifacts/`` (or ``$OPENBELL_ARTIFACTS``)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(os.environ.get("OPENBELL_ARTIFACTS") or Path(__file__).resolve().parents[1] / "artifacts")

# skipped without Chromium on a developer's machine; in CI (make test installs it) its absence fails
browser = pytest.mark.skipif(not CHROMIUM.exists() and not os.environ.get("CI"),
                             reason="Debian chromium is not installed (`make browser` installs it)")


def draw(path: Path, shot: Path, charts: int, drawn: str) -> dict[str, Any]:
    """Open the page at ``path``, wait for ``charts`` plotly charts, evaluate ``drawn`` (a JS function) on it and
    keep a screenshot (``shot``, copied to :data:`ARTIFACTS`); fails if the page asked for anything but itself."""
    from playwright.sync_api import sync_playwright

    asked: list[str] = []
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS)
        try:
            tab = chromium.new_page(viewport={"width": 1400, "height": 1000})
            tab.on("request", lambda request: asked.append(request.url))
            tab.goto(path.as_uri(), wait_until="load")
            tab.wait_for_function(f"() => document.querySelectorAll('.js-plotly-plot .main-svg').length >= {charts}",
                                  timeout=60_000)
            tab.wait_for_timeout(300)  # the responsive resize settles
            result = tab.evaluate(drawn)
            tab.screenshot(path=str(shot), full_page=True)
        finally:
            chromium.close()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, ARTIFACTS / shot.name)
    print(f"\nscreenshot: {ARTIFACTS / shot.name}")
    assert asked == [path.as_uri()], f"the page asked for more than itself: {asked}"
    assert shot.stat().st_size > 50_000
    return dict(result)
