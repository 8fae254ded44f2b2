"""How the drills that leave Airflow alone are grouped to run at once, and what ``openbell drill`` refuses."""

from __future__ import annotations

from pathlib import Path

import pytest

from openbell.runtime.drill_kit import Drill
from openbell.runtime.drill_stage import DrillStage, groups, main
from openbell.runtime.drills import DRILLS


def _drill(name: str, **kw: object) -> Drill:
    return Drill(name, f"drill {name}", **kw)  # type: ignore[arg-type]


def test_a_drill_that_restarts_the_state_server_runs_after_the_others_alone() -> None:
    drills = [_drill("a"), _drill("pg", separate_state_server=True), _drill("b"), _drill("c")]
    assert [[d.name for d in g] for g in groups(drills)] == [["a", "b", "c"], ["pg"]]
    assert [[d.name for d in g] for g in groups(drills[1:2])] == [["pg"]]
    assert groups([]) == []


def test_a_stage_refuses_a_drill_whose_name_is_not_an_account_name(tmp_path: Path) -> None:
    """Each drill on a stage trades as the account of its name."""
    with pytest.raises(ValueError, match="not an account name: 'Bad-Name'"):
        DrillStage([_drill("Bad-Name")], tmp_path)
    DrillStage([d for d in DRILLS.values() if d.shares_stage], tmp_path)  # every drill's name is one


def test_a_stage_refuses_a_drill_that_cannot_share_it(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"\['scheduler_restart'\] cannot share a stage"):
        DrillStage([DRILLS["corrections"], DRILLS["scheduler_restart"]], tmp_path)


@pytest.mark.parametrize(("argv", "message"), [
    (["no_such_drill"], "unknown drill(s) no_such_drill"),
    (["--together", "0", "corrections"], "--together must be at least 1, not 0"),
    (["--together", "two"], "invalid int value: 'two'"),
])
def test_the_command_refuses_bad_arguments_before_starting_anything(
        argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_a_stage_refuses_two_drills_that_would_trade_as_one_account(tmp_path: Path) -> None:
    long = "stream_drops_and_silence"  # cut to 20 characters, both trade as "stream_drops_and_sil"
    with pytest.raises(ValueError, match="two drills would trade as one account"):
        DrillStage([_drill(long + "_morning"), _drill(long + "_evening")], tmp_path)
