"""The trading_day DAG as Airflow's own DagBag loads it."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _dagbag(tmp_path: Path, code: str) -> str:
    script = textwrap.dedent(
        f"""
        import json
        from airflow.dag_processing.dagbag import DagBag
        bag = DagBag({str(ROOT / 'dags')!r})
        {code}
        """
    )
    env = {
        "AIRFLOW_HOME": str(tmp_path),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "PATH": "/usr/bin:/bin",
    }
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.strip().splitlines()[-1]


def test_dag_imports_without_errors_and_wires_the_day(tmp_path: Path) -> None:
    line = _dagbag(
        tmp_path,
        """
        dag = bag.dags["trading_day"]
        print(json.dumps({
            "errors": {k: str(v) for k, v in bag.import_errors.items()},
            "upstream": {t.task_id: sorted(t.upstream_task_ids) for t in dag.tasks},
            "rules": {t.task_id: str(t.trigger_rule) for t in dag.tasks},
            "catchup": dag.catchup,
            "timetable": type(dag.timetable).__name__,
            "params": sorted(dag.params.keys()),
        }))
        """,
    )
    import json

    info = json.loads(line)
    assert info["errors"] == {}
    up = info["upstream"]
    assert up["download"] == ["wait_for_open"]
    assert up["todays_bars"] == ["download"]
    assert up["reconcile"] == ["todays_bars"]
    assert up["live_trading"] == ["reconcile"]
    # The timed steps wait for their own market time in their own task; the optimizer needs today's bars.
    assert up["midday_optimize"] == ["todays_bars"]
    assert info["rules"]["midday_optimize"].lower().endswith("none_failed")  # a skipped todays_bars (backfill)
    # Liquidation depends on nothing but the open, and runs whatever happened there.
    assert up["eod_liquidate"] == ["wait_for_open"]
    assert info["rules"]["eod_liquidate"].lower().endswith("all_done")
    assert info["catchup"] is False
    assert info["timetable"] == "NYSESessionTimetable"
    assert {"universe", "strategy", "max_weight", "liquidate_minutes_before_close"} <= set(info["params"])


def test_params_refuse_bad_values_at_trigger_time(tmp_path: Path) -> None:
    line = _dagbag(
        tmp_path,
        """
        import copy
        dag = bag.dags["trading_day"]
        results = {}
        for name, value in {"universe": ["tqqq"], "max_weight": 1.5, "liquidate_minutes_before_close": 0,
                            "universe_ok": ["TQQQ", "SQQQ"]}.items():
            params = copy.deepcopy(dag.params)
            key = name.removesuffix("_ok")
            try:
                params[key] = value
                params.validate()
                results[name] = "accepted"
            except Exception as exc:
                results[name] = "refused: " + type(exc).__name__
        print(json.dumps(results))
        """,
    )
    import json

    results = json.loads(line)
    assert results["universe"].startswith("refused")
    assert results["max_weight"].startswith("refused")
    assert results["liquidate_minutes_before_close"].startswith("refused")
    assert results["universe_ok"] == "accepted"


def test_params_refuse_nan_wrong_types_and_unknown_strategies_at_trigger_time(tmp_path: Path) -> None:
    nan = float("nan")
    cases = {
        "max_weight": [nan, "0.5", True],
        "max_gross": [nan],
        "daily_loss_limit": [nan],
        "min_notional": [nan],
        "open_offset_minutes": [nan],
        "optimize_minutes_before_close": [nan],
        "liquidate_minutes_before_close": [nan],
        "optimize_budget_seconds": [nan],
        "history_days": [nan, 30.5, True],
        "universe": ["TQQQ", ["TQQQ\n"], ["TQQQ", "TQQQ"]],
        "strategy": ["mean_reversion", "", ":Leaders", "ob_example:", "a:b:c"],
        "strategy_params": [{"threshold": nan}, "lookback=10"],
    }
    # a strategy named module:Class is imported, and strategy_params checked against its schema, by the hook
    accepted = {"max_weight": [0.5, 1], "strategy": ["momentum_rotation", "ob_example:Leaders"],
                "strategy_params": [None, {}, {"lookback": 10, "threshold": 0.5, "weighting": "score"},
                                    {"lookback": 1}]}
    line = _dagbag(
        tmp_path,
        f"""
        from airflow.serialization.serialized_objects import DagSerialization
        dag = bag.dags["trading_day"]
        # the api-server validates a trigger's conf against the serialized DAG's params
        served = DagSerialization.from_dict(json.loads(json.dumps(DagSerialization.to_dict(dag))))
        nan = float("nan")

        def outcome(key, value):
            try:
                served.params.deep_merge({{key: value}}).validate()
                return "accepted"
            except Exception as exc:
                return "refused: " + type(exc).__name__

        print(json.dumps({{
            "refused": [[k, repr(v), outcome(k, v)] for k, vs in {cases!r}.items() for v in vs],
            "accepted": [[k, repr(v), outcome(k, v)] for k, vs in {accepted!r}.items() for v in vs],
            "hook": getattr(dag.get_task("wait_for_open")._pre_execute_hook, "__name__", None),
        }}))
        """,
    )
    import json

    info = json.loads(line)
    assert [c for c in info["refused"] if not c[2].startswith("refused")] == []
    assert [c for c in info["accepted"] if c[2] != "accepted"] == []
    # what JSON schema cannot see (the chosen strategy's own rules) is checked before the run waits for the open
    assert info["hook"] == "check_account_run_params"  # the run's account's ceilings


def test_every_step_but_the_liquidation_retries_through_an_api_server_outage(tmp_path: Path) -> None:
    """While the api-server is down, every attempt that starts fails; a step whose retries are spent before
    it is back fails the day. The liquidation retries in market time before the close instead."""
    line = _dagbag(
        tmp_path,
        """
        dag = bag.dags["trading_day"]
        print(json.dumps({t.task_id: [t.retries, t.retry_delay.total_seconds(), float(t.retry_exponential_backoff),
                                      t.max_retry_delay and t.max_retry_delay.total_seconds()] for t in dag.tasks}))
        """,
    )
    import json

    from openbell.runtime.platform_drills import API_DOWN_SECONDS

    def retrying_for(retries: int, delay: float, backoff: float, cap: float | None) -> float:
        """The least wall time an outage must last to spend every retry (Airflow only adds jitter)."""
        waits = [delay * (backoff ** n if backoff else 1) for n in range(retries)]
        return sum(min(w, cap) if cap else w for w in waits)

    tasks = json.loads(line)
    lasting = {t: retrying_for(*v) for t, v in tasks.items() if t != "eod_liquidate"}
    assert {t: s for t, s in lasting.items() if s < API_DOWN_SECONDS} == {}, tasks
    assert set(tasks) >= {"wait_for_open", "download", "todays_bars", "reconcile", "live_trading", "midday_optimize"}
