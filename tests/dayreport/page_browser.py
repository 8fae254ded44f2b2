"""Headless Chromium as the page tests use it (Debian's, as ``make browser`` installs it)."""

from __future__ import annotations

import os
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(os.environ.get("OPENBELL_ARTIFACTS") or Path(__file__).resolve().parents[2] / "artifacts")
