"""NYSESessionTimetable against exchange_calendars' XNYS for 2020-2030, and the plugin registration."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import exchange_calendars as xc
import pandas as pd
import pendulum
import pytest
from airflow.timetables.base import DagRunInfo, DataInterval, TimeRestriction

from dates import et
from openbell.calendar import ET
from openbell.workflow.timetable import NYSESessionTimetable

ROOT = Path(__file__).resolve().parents[2]
TT = NYSESessionTimetable()


def utc(y: int, m: int, d: int, hh: int = 0, mm: int = 0) -> pendulum.DateTime:
    return pendulum.datetime(y, m, d, hh, mm, tz="UTC")


def epochs(values: Iterable[datetime]) -> list[int]:
    """Epoch seconds, to compare pendulum and pandas datetimes exactly."""
    return [int(v.timestamp()) for v in values]


def runs(restriction: TimeRestriction, last: DataInterval | None = None) -> list[DagRunInfo]:
    out: list[DagRunInfo] = []
    while info := TT.next_dagrun_info(last_automated_data_interval=last, restriction=restriction):
        out.append(info)
        last = info.data_interval
    return out


def test_every_session_2020_to_2030_matches_xnys() -> None:
    got = runs(TimeRestriction(utc(2020, 1, 1), utc(2030, 12, 31, 23, 59), catchup=True))

    ref = xc.get_calendar("XNYS", start="2019-06-01", end="2031-06-30")
    sessions = ref.sessions_in_range("2020-01-01", "2030-12-31")
    opens, closes = ref.opens.loc[sessions], ref.closes.loc[sessions]
    run_after = (sessions + pd.Timedelta(hours=9)).tz_localize(ET).tz_convert("UTC")

    assert len(got) == len(sessions) > 2700
    assert epochs(i.data_interval.start for i in got) == epochs(opens)
    assert epochs(i.data_interval.end for i in got) == epochs(closes)
    assert epochs(i.run_after for i in got) == epochs(run_after)
    assert epochs(i.logical_date for i in got) == epochs(opens)
    assert all(i.run_after.tzinfo is not None and i.run_after < i.data_interval.start for i in got)
    # no run on a weekend, and half days end at 13:00 ET
    start_days = pd.DatetimeIndex([i.data_interval.start for i in got]).tz_convert(ET)
    assert not (start_days.dayofweek >= 5).any()
    close_et = closes.dt.tz_convert(ET).dt.strftime("%H:%M")
    assert set(close_et) == {"16:00", "13:00"}
    half_days = {d.date() for d in sessions[(close_et == "13:00").to_numpy()]}
    assert date(2025, 11, 28) in half_days and date(2024, 12, 24) in half_days
    assert len(half_days) == len(ref.early_closes[(ref.early_closes >= sessions[0])
                                                  & (ref.early_closes <= sessions[-1])])
    # a holiday is skipped: Thanksgiving 2025 is followed directly by the half day
    dates = [i.data_interval.start.in_timezone(ET).date() for i in got]
    k = dates.index(date(2025, 11, 26))
    assert dates[k + 1] == date(2025, 11, 28)


@pytest.mark.parametrize(
    ("first", "expected"),
    [
        # spring forward on Sunday 2025-03-09: EST before, EDT after
        (date(2025, 3, 6), [(date(2025, 3, 6), "14:00", "14:30", "21:00"),
                            (date(2025, 3, 7), "14:00", "14:30", "21:00"),
                            (date(2025, 3, 10), "13:00", "13:30", "20:00")]),
        # fall back on Sunday 2025-11-02
        (date(2025, 10, 30), [(date(2025, 10, 30), "13:00", "13:30", "20:00"),
                              (date(2025, 10, 31), "13:00", "13:30", "20:00"),
                              (date(2025, 11, 3), "14:00", "14:30", "21:00")]),
    ],
    ids=["spring", "autumn"],
)
def test_dst_weeks(first: date, expected: list[tuple[date, str, str, str]]) -> None:
    got = _three(first)
    for info, (d, run_after, open_, close) in zip(got, expected, strict=True):
        assert info.data_interval.start.date() == d
        assert info.run_after.strftime("%H:%M") == run_after
        assert info.data_interval.start.strftime("%H:%M") == open_
        assert info.data_interval.end.strftime("%H:%M") == close
        assert info.run_after.in_timezone(ET).strftime("%H:%M") == "09:00"


def _three(first: date) -> list[DagRunInfo]:
    out, last = [], None
    restriction = TimeRestriction(utc(first.year, first.month, first.day), None, catchup=True)
    for _ in range(3):
        info = TT.next_dagrun_info(last_automated_data_interval=last, restriction=restriction)
        assert info is not None
        out.append(info)
        last = info.data_interval
    return out


def test_earliest_and_latest_bound_the_logical_date() -> None:
    wed = date(2025, 11, 26)
    # start_date during Wednesday's session: that session's open is before it, so Friday is first
    mid = TimeRestriction(pendulum.instance(et(wed, 11)), None, catchup=True)
    first = TT.next_dagrun_info(last_automated_data_interval=None, restriction=mid)
    assert first is not None and first.data_interval.start.in_timezone(ET).date() == date(2025, 11, 28)
    # start_date exactly at the open is inclusive
    at_open = TimeRestriction(pendulum.instance(et(wed, 9, 30)), None, catchup=True)
    first = TT.next_dagrun_info(last_automated_data_interval=None, restriction=at_open)
    assert first is not None and first.data_interval.start.in_timezone(ET).date() == wed
    # end_date one minute before Friday's open excludes Friday; at the open includes it
    fri = date(2025, 11, 28)
    wed0 = pendulum.instance(et(wed, 0))
    got = runs(TimeRestriction(wed0, pendulum.instance(et(fri, 9, 29)), catchup=True))
    assert [i.data_interval.start.in_timezone(ET).date() for i in got] == [wed]
    got = runs(TimeRestriction(wed0, pendulum.instance(et(fri, 9, 30)), catchup=True))
    assert len(got) == 2


def test_no_start_date_and_catchup_schedules_nothing() -> None:
    assert TT.next_dagrun_info(last_automated_data_interval=None,
                               restriction=TimeRestriction(None, None, catchup=True)) is None


def test_end_of_calendar_range_ends_the_schedule() -> None:
    assert runs(TimeRestriction(utc(2040, 12, 28), None, catchup=True))[-1].data_interval.start.date() == \
        date(2040, 12, 31)


def _latest_due_session(now: datetime) -> date:
    """Independently: the latest XNYS session whose 09:00 ET is at or before now."""
    ref = xc.get_calendar("XNYS", start=(now - timedelta(days=30)).date().isoformat(),
                          end=(now + timedelta(days=30)).date().isoformat())
    sessions = ref.sessions_in_range((now - timedelta(days=20)).date().isoformat(),
                                     (now + timedelta(days=5)).date().isoformat())
    due = (sessions + pd.Timedelta(hours=9)).tz_localize(ET) <= pd.Timestamp(now)
    return sessions[due][-1].date()


def test_no_catchup_starts_from_the_latest_due_session() -> None:
    now = datetime.now(UTC)
    expected = _latest_due_session(now)
    restriction = TimeRestriction(utc(2020, 1, 1), None, catchup=False)
    info = TT.next_dagrun_info(last_automated_data_interval=None, restriction=restriction)
    assert info is not None and info.data_interval.start.in_timezone(ET).date() == expected
    # an old last run does not drag the schedule back either
    old = DataInterval(utc(2021, 3, 1, 14, 30), utc(2021, 3, 1, 21))
    info = TT.next_dagrun_info(last_automated_data_interval=old, restriction=restriction)
    assert info is not None and info.data_interval.start.in_timezone(ET).date() == expected
    # a start_date in the future wins
    future = TimeRestriction(utc(2035, 1, 1), None, catchup=False)
    info = TT.next_dagrun_info(last_automated_data_interval=None, restriction=future)
    assert info is not None and info.data_interval.start.date() == date(2035, 1, 2)
    # and the run after the latest due one is the next session
    ran = DataInterval(*_interval_for(expected))
    info = TT.next_dagrun_info(last_automated_data_interval=ran, restriction=restriction)
    assert info is not None and info.data_interval.start.in_timezone(ET).date() > expected


def _interval_for(d: date) -> tuple[pendulum.DateTime, pendulum.DateTime]:
    got = TT.infer_manual_data_interval(run_after=pendulum.instance(et(d, 12)))
    assert got.start.in_timezone(ET).date() == d
    return got.start, got.end


@pytest.mark.parametrize(
    ("run_after", "session_date", "close_et"),
    [
        (et(date(2025, 11, 29), 10), date(2025, 12, 1), "16:00"),  # Saturday -> Monday
        (et(date(2025, 11, 27), 10), date(2025, 11, 28), "13:00"),  # Thanksgiving -> the half day
        (et(date(2025, 11, 28), 15), date(2025, 11, 28), "13:00"),  # the half day itself, after its close
        (et(date(2025, 3, 10), 22, 30), date(2025, 3, 10), "16:00"),  # ET date, not the UTC date
    ],
    ids=["weekend", "holiday", "half-day", "et-evening"],
)
def test_infer_manual_data_interval(run_after: datetime, session_date: date, close_et: str) -> None:
    got = TT.infer_manual_data_interval(run_after=pendulum.instance(run_after))
    assert got.start.in_timezone(ET).date() == session_date
    assert got.start.in_timezone(ET).strftime("%H:%M") == "09:30"
    assert got.end.in_timezone(ET).strftime("%H:%M") == close_et


def test_summary_and_description() -> None:
    assert TT.summary == "NYSE sessions"
    assert "09:00 ET" in TT.description
    assert NYSESessionTimetable.deserialize(TT.serialize()).summary == TT.summary


def test_plugin_registers_the_timetable() -> None:
    sys.path.insert(0, str(ROOT / "plugins"))
    try:
        import openbell_plugin
    finally:
        sys.path.remove(str(ROOT / "plugins"))
    assert openbell_plugin.OpenbellPlugin.name == "openbell"
    assert NYSESessionTimetable in openbell_plugin.OpenbellPlugin.timetables


DAG_FILE = """
import pendulum
from airflow.sdk import DAG
from openbell.workflow.operators import WaitForMarketTime
from openbell.workflow.timetable import NYSESessionTimetable

with DAG("tt_check", schedule=NYSESessionTimetable(), start_date=pendulum.datetime(2025, 11, 24, tz="UTC"),
         catchup=True):
    WaitForMarketTime(task_id="wait_for_open", anchor="open")
    WaitForMarketTime(task_id="wait_midday", anchor="midday")
    WaitForMarketTime(task_id="wait_liquidate", anchor="close", offset_minutes=-2)
"""

CHECK = """
import json, sys
from airflow.dag_processing.dagbag import DagBag
from airflow.serialization.serialized_objects import DagSerialization
bag = DagBag(sys.argv[1])
dag = bag.dags.get("tt_check")
out = {"errors": {k: str(v) for k, v in bag.import_errors.items()}}
if dag is not None:
    data = DagSerialization.to_dict(dag)
    back = DagSerialization.from_dict(json.loads(json.dumps(data)))
    out["timetable"] = type(back.timetable).__module__ + "." + type(back.timetable).__name__
    out["runs"] = [str(i.logical_date) for _, i in zip(range(4), back.iter_dagrun_infos_between(
        dag.start_date, dag.start_date.add(days=7)))]
    out["tasks"] = sorted(dag.task_ids)
print(json.dumps(out))
"""


def test_dag_with_timetable_and_operator_imports_and_serializes(tmp_path: Path) -> None:
    """Parsed by a real DagBag and round-tripped through Airflow's serializer with the plugin loaded."""
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "tt_check.py").write_text(textwrap.dedent(DAG_FILE))
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    }
    proc = subprocess.run([sys.executable, "-c", CHECK, str(dags)], env=env, capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["errors"] == {}
    assert out["timetable"] == "openbell.workflow.timetable.NYSESessionTimetable"
    assert out["tasks"] == ["wait_for_open", "wait_liquidate", "wait_midday"]
    # Mon-Wed, then Friday's half day (Thursday is Thanksgiving)
    assert out["runs"] == ["2025-11-24 14:30:00+00:00", "2025-11-25 14:30:00+00:00",
                           "2025-11-26 14:30:00+00:00", "2025-11-28 14:30:00+00:00"]
