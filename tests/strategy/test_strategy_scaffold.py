"""``openbell strategy new NAME [--dir DIR]`` writes a strategy that works and a test that passes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import openbell
from openbell.cli import main
from openbell.strategy import resolve


def test_the_new_strategy_meets_the_contract_and_its_test_passes(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    where = tmp_path / "strategies"
    assert main(["strategy", "new", "my_trend", "--dir", str(where)]) == 0
    assert sorted(p.name for p in where.iterdir()) == ["my_trend.py", "test_my_trend.py"]
    assert "strategy my_trend:MyTrend" in capsys.readouterr().out
    monkeypatch.syspath_prepend(str(where))
    assert resolve("my_trend:MyTrend").name == "my_trend"
    env = {**os.environ, "PYTHONPATH": str(Path(openbell.__file__).parents[1])}  # this checkout's openbell
    out = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "test_my_trend.py"],
                         cwd=where, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "3 passed" in out.stdout


def test_an_existing_file_is_not_overwritten(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "test_my_trend.py").write_text("# mine\n")
    assert main(["strategy", "new", "my_trend", "--dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "refusing to overwrite" in err and "test_my_trend.py" in err and "nothing written" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["test_my_trend.py"]
    assert (tmp_path / "test_my_trend.py").read_text() == "# mine\n"


@pytest.mark.parametrize("name", ["2fast", "my-trend", "class", "my trend", ""])
def test_a_name_that_is_not_a_python_identifier_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                           name: str) -> None:
    assert main(["strategy", "new", name, "--dir", str(tmp_path)]) == 2
    assert "is not a Python identifier" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
