"""The live step records the run's parameters in its summary, where the day's report finds them to replay
the day with the same strategy, parameters, universe, limits and cut-off, and the assets' terms the attempt
read (which symbols it could size in fractions or sell short)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine

from dates import SESSION, the_session
from openbell import trading
from openbell.dayreport.live import recorded_asset_terms, recorded_run_params
from openbell.params import RunParams
from openbell.store.ledger import steps_for
from openbell.trading.attempt_report import AttemptReport
from openbell.workflow import steps

TERMS = {"fractionable": ["SQQQ", "TQQQ"], "shortable": ["TQQQ"]}


def test_the_live_step_records_the_run_parameters(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    params = RunParams(universe=["TQQQ", "SQQQ"], strategy_params={"lookback": 20}, max_weight=0.3,
                       liquidate_minutes_before_close=5.0)
    ctx = steps.StepContext(session=the_session(), params=params, run_id="scheduled__2025-11-20", attempt=1,
                            run_type="scheduled", config_factory=lambda: None,  # type: ignore[arg-type,return-value]
                            state_url=engine.url.render_as_string(hide_password=False))
    ctx.__dict__.update(venue=object(), clock=object())  # no broker: the attempt itself is replaced below
    asked: dict[str, Any] = {}

    def attempt(*args: Any, **options: Any) -> AttemptReport:
        asked.update(options)
        return AttemptReport(session_date=SESSION.isoformat(), asset_terms=TERMS)

    monkeypatch.setattr(steps, "from_airflow", lambda context: ctx)
    monkeypatch.setattr(steps, "require_live", lambda ctx: None)
    monkeypatch.setattr(trading, "run_trading_attempt", attempt)
    summary = steps.live_trading({})
    assert asked["strategy_name"] == "momentum_rotation" and asked["params_override"] == {"lookback": 20}
    expected = params.model_dump(mode="json")
    assert summary["run_params"] == expected
    [row] = steps_for(engine, SESSION)
    assert row["summary"]["run_params"] == expected
    assert recorded_run_params(engine, SESSION) == expected
    assert row["summary"]["asset_terms"] == TERMS and recorded_asset_terms(engine, SESSION) == TERMS
