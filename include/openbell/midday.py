"""The 14:30 re-optimization: search on stored bars, keep the incumbent unless beaten out of sample."""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine

from openbell.calendar import Session, previous_sessions
from openbell.clock import MarketClock
from openbell.optimize import optimize
from openbell.params import RunParams
from openbell.store.bars import load_bars
from openbell.store.versions import add_params, latest_params
from openbell.strategy import build, validate_params
from openbell.strategy.risk import RiskLimits

log = logging.getLogger(__name__)

OPTIMIZE_WINDOW = timedelta(minutes=10)


def optimize_session(
    engine: Engine, session: Session, clock: MarketClock, params: RunParams, *, n_candidates: int = 256
) -> dict[str, Any]:
    """Run the parameter search for ``session`` up to now and store a winning version.

    Uses the last ``optimize_sessions`` sessions and today so far. The budget is
    ``optimize_budget_seconds`` of wall time, cut short so the search ends within
    ``OPTIMIZE_WINDOW`` of market time (at a fast simulator speed a minute of wall time is hours of
    market). The incumbent is the latest stored version, or the strategy's default parameters
    (what live trading runs) when there is none: a version is written only if re-optimizing beats
    it out of sample (walk-forward). A winner that the strategy's schema refuses is not stored. A run
    whose ``strategy_params`` fix the parameters (live trading then loads no version) is not searched.
    """
    now = clock.now()
    if params.strategy_params is not None:  # the run fixed them: live trading loads no version today
        return {"strategy": params.strategy, "market_time": now.isoformat(), "new_version": None,
                "skipped": "the run's strategy_params fix the strategy's parameters for the day: no search"}
    budget = min(params.optimize_budget_seconds, max(1.0, clock.wall_deadline(now + OPTIMIZE_WINDOW) - time.time()))
    history = previous_sessions(session.date, params.optimize_sessions)
    bars = load_bars(engine, params.universe, history[0].open, min(now, session.close))
    incumbent = latest_params(engine, params.strategy)
    incumbent_params = incumbent.params if incumbent else validate_params(params.strategy, None).model_dump()
    result = optimize(
        bars,
        strategy=params.strategy,
        incumbent=incumbent_params,
        universe=params.universe,
        budget_s=budget,
        n_candidates=n_candidates,
        limits=RiskLimits(max_weight=params.max_weight, max_gross=params.max_gross,
                          daily_loss_limit=params.daily_loss_limit),
    )
    summary: dict[str, Any] = {
        "strategy": params.strategy,
        "market_time": now.isoformat(),
        "bars": len(bars),
        "budget_s": round(budget, 3),
        "sessions": len(result.sessions),
        "evaluated": result.evaluated,
        "budget_exhausted": result.budget_exhausted,
        "best": {"params": result.best_params, "in_sample": result.in_sample,
                 "out_of_sample": result.out_of_sample},
        "incumbent": {"version": incumbent.id if incumbent else None,
                      "params": "stored" if incumbent else "defaults",
                      "out_of_sample": result.incumbent_out_of_sample},
        "beats_incumbent": result.beats_incumbent,
        "new_version": None,
    }
    if not result.beats_incumbent:
        return summary
    try:
        build(params.strategy, result.best_params)
    except ValueError as exc:
        log.warning("optimizer's parameters refused by the strategy: %s", exc)
        summary["refused"] = str(exc)
        return summary
    version = add_params(
        engine, params.strategy, result.best_params, source="optimizer", session_date=session.date,
        score={"in_sample": result.in_sample, "out_of_sample": result.out_of_sample,
               "incumbent_out_of_sample": result.incumbent_out_of_sample},
    )
    summary["new_version"] = version.id
    return summary
