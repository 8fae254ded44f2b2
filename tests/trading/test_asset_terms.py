"""The assets' terms an attempt reads when it prepares (a run allowing fractions or short sales) go into its
report, the ``live_trading`` step's summary: the day's replay sizes and shorts by the same symbols."""

from __future__ import annotations

from typing import Any, cast

from dates import SESSION, the_session
from openbell.ports import AssetTerms, BrokerPort, MarketDataPort
from openbell.trading.attempt_report import AttemptReport
from openbell.trading.prepare import Preparation

TERMS = {
    "SSO": AssetTerms("SSO", tradable=True, fractionable=True, shortable=True, easy_to_borrow=True),
    "SDS": AssetTerms("SDS", tradable=True, fractionable=True, shortable=True, easy_to_borrow=False),
    "XLF": AssetTerms("XLF", tradable=True, fractionable=False, shortable=True, easy_to_borrow=True),
    "HALT": AssetTerms("HALT", tradable=False, fractionable=True, shortable=True, easy_to_borrow=True),
}


class Assets:
    """A broker that knows only the assets' terms of :data:`TERMS`; ``BOOM`` cannot be read."""

    def asset_terms(self, symbol: str) -> AssetTerms | None:
        if symbol == "BOOM":
            raise ConnectionError("reset by peer")
        return TERMS.get(symbol)

    def describe(self, exc: BaseException) -> str:
        return f"{type(exc).__name__}: {exc}"


def _prep(universe: list[str], report: AttemptReport) -> Preparation:
    return Preparation(cast(BrokerPort, Assets()), cast(MarketDataPort, None), cast(Any, None), the_session(),
                       universe, report, warmup_sessions=1)


def test_the_terms_read_are_in_the_report_and_its_summary() -> None:
    report = AttemptReport(SESSION.isoformat())
    assert report.as_dict()["asset_terms"] is None  # not read: the run allowed neither
    fractionable, shortable = _prep(["XLF", "SSO", "SDS", "HALT", "NONE", "BOOM"], report).asset_terms()
    assert fractionable == {"SSO", "SDS"} and shortable == {"SSO", "XLF"}
    # not tradable, unknown or unreadable: neither, as the loop trades them
    assert report.as_dict()["asset_terms"] == {"fractionable": ["SDS", "SSO"], "shortable": ["SSO", "XLF"]}
