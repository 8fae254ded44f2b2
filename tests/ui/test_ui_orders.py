"""The Trading view's orders table in headless Chromium: a notional order shows its dollars (Alpaca says no qty
for one) with the shares expected beside them when known; a quantity order its shares."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from ui_helpers import COOKIE, good_cookie

from dates import SESSION as DAY
from openbell.broker import book
from openbell.store.db import make_engine
from page_browser import CHROMIUM, CHROMIUM_FLAGS, browser


@browser
def test_the_orders_table_shows_a_notional_orders_dollars(served: Any, state_url: str) -> None:
    from playwright.sync_api import sync_playwright

    engine = make_engine(state_url)
    try:
        with engine.begin() as conn:
            for row in (book.OrderRow(client_order_id="ob-20251120-000002-SSO", session_date=DAY, symbol="SSO",
                                      side="buy", qty=None, notional=1250.5, status="new"),
                        book.OrderRow(client_order_id="ob-20251120-000003-QQQ", session_date=DAY, symbol="QQQ",
                                      side="buy", qty=2.4716, notional=250.55, status="filled", filled_qty=2.4716),
                        book.OrderRow(client_order_id="ob-20251120-000004-TQQQ", session_date=DAY, symbol="TQQQ",
                                      side="sell", qty=3, status="filled", filled_qty=3)):
                book.upsert_order(conn, row)
    finally:
        engine.dispose()
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS)
        try:
            context = chromium.new_context()
            context.add_cookies([{"name": COOKIE, "value": good_cookie()[COOKIE],
                                  "domain": urlsplit(served.base).hostname, "path": "/"}])
            tab = context.new_page()
            tab.goto(f"{served.base}/?date={DAY.isoformat()}")
            tab.wait_for_function("() => document.querySelectorAll('#orders tbody tr').length === 3", timeout=30_000)
            shown = tab.evaluate("() => Object.fromEntries([...document.querySelectorAll('#orders tbody tr')]"
                                 ".map((tr) => [tr.cells[2].textContent, tr.cells[4].textContent]))")
        finally:
            chromium.close()
    assert shown == {"SSO": "$1250.50", "QQQ": "$250.55 (~2.4716)", "TQQQ": "3.0000"}, shown
