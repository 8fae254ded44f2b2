"""``openbell strategy new NAME [--dir DIR]``: a starting strategy file and its test.

``DIR/NAME.py`` holds a small working strategy that meets the contract (no vectorized twin) and
``DIR/test_NAME.py`` its tests (openbell resolves it, refuses bad params, and live and backtest agree). A run
names it ``NAME:ClassName`` once DIR is on the workers' ``PYTHONPATH``. Nothing is written when either file
exists or NAME is not a Python identifier.
"""

from __future__ import annotations

import argparse
import keyword
import sys
from pathlib import Path
from string import Template

STRATEGY = Template('''\
"""$name: hold, equally weighted, the symbols whose last close is above the one before."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from openbell.strategy import Bar


class ${cls}Params(BaseModel):
    """What a run may set in strategy_params; openbell checks them before the day starts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    gross: float = Field(0.5, gt=0.0, le=1.0, description="Exposure, split among the rising symbols.")


class $cls:
    """Run it as strategy "$name:$cls" (this file's directory on PYTHONPATH); see docs/strategies.md."""

    name = "$name"
    Params = ${cls}Params

    def __init__(self, params: ${cls}Params, universe: Sequence[str]) -> None:
        self.params = params
        self.universe = tuple(universe)
        self._last: dict[str, float] = {}

    def warmup(self, history: pd.DataFrame) -> None:
        """Forget everything, then absorb earlier bars (possibly none)."""
        self._last = {}
        for row in history.sort_values("timestamp", kind="stable").itertuples():
            self._last[row.symbol] = float(row.close)

    def on_minute(self, ts: datetime, bars: Mapping[str, Bar]) -> dict[str, float]:
        """Target weights of every universe symbol after the minute that started at ``ts``."""
        rising = [s for s, bar in bars.items() if s in self.universe and bar.close > self._last.get(s, bar.close)]
        self._last.update({s: bar.close for s, bar in bars.items()})
        return {s: self.params.gross / len(rising) if s in rising else 0.0 for s in self.universe}
''')

TEST = Template('''\
"""The $name strategy: openbell resolves it, refuses bad params, and live and backtest agree."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from openbell import backtest
from openbell.strategy import InvalidParams, build, resolve

SPEC = "$name:$cls"
UNIVERSE = ("AAA", "BBB", "CCC")


def bars(sessions: int = 3, seed: int = 0) -> pd.DataFrame:
    """Random-walk minute bars of UNIVERSE over ``sessions`` weekdays (09:30-16:00 New York time)."""
    rng = np.random.default_rng(seed)
    frames = []
    for day in pd.bdate_range("2024-03-04", periods=sessions):
        stamps = pd.date_range(day.tz_localize("America/New_York") + pd.Timedelta(hours=9, minutes=30),
                               periods=390, freq="min").tz_convert("UTC")
        for symbol in UNIVERSE:
            close = 100 * np.exp(np.cumsum(rng.normal(0, 1e-3, len(stamps))))
            opens = np.r_[100.0, close[:-1]]
            frames.append(pd.DataFrame({
                "timestamp": stamps, "symbol": symbol, "open": opens, "high": np.maximum(opens, close),
                "low": np.minimum(opens, close), "close": close, "volume": 100.0,
            }))
    return pd.concat(frames, ignore_index=True)


def test_openbell_resolves_the_class() -> None:
    assert resolve(SPEC).name == "$name"


def test_bad_params_are_refused_naming_the_field() -> None:
    with pytest.raises(InvalidParams, match="gross"):
        build(SPEC, {"gross": 2.0}, UNIVERSE)


def test_live_and_backtest_agree() -> None:
    """The backtest's targets are what on_minute returns live after warming up on the first session."""
    frame = bars()
    result = backtest.run(SPEC, {"gross": 0.5}, frame, warmup_sessions=1, universe=UNIVERSE)
    live = backtest.replay(build(SPEC, {"gross": 0.5}, UNIVERSE), frame, warmup_sessions=1)
    np.testing.assert_allclose(live.to_numpy(), result.targets.to_numpy(), atol=1e-12)
    assert result.targets.to_numpy().max() > 0 and (result.targets.sum(axis=1) <= 0.5 + 1e-9).all()
''')


def class_name(name: str) -> str:
    """``my_trend`` -> ``MyTrend``."""
    return "".join(part[:1].upper() + part[1:] for part in name.split("_")) or "Strategy"


def new(name: str, directory: Path) -> list[Path]:
    """Write the strategy and its test into ``directory``; ValueError (and nothing written) when refused."""
    if not name.isidentifier() or keyword.iskeyword(name):
        raise ValueError(f"{name!r} is not a Python identifier (it becomes the module's name)")
    paths = [directory / f"{name}.py", directory / f"test_{name}.py"]
    existing = [str(p) for p in paths if p.exists()]
    if existing:
        raise ValueError(f"refusing to overwrite {', '.join(existing)}; nothing written")
    directory.mkdir(parents=True, exist_ok=True)
    values = {"name": name, "cls": class_name(name)}
    for path, template in zip(paths, (STRATEGY, TEST), strict=True):
        path.write_text(template.substitute(values))
    return paths


def main(argv: list[str] | None = None) -> int:
    """``openbell strategy new NAME [--dir DIR]``."""
    parser = argparse.ArgumentParser(prog="openbell strategy", description="Write a new strategy and its test.")
    sub = parser.add_subparsers(dest="action", required=True)
    create = sub.add_parser("new", help="write DIR/NAME.py and DIR/test_NAME.py")
    create.add_argument("name", metavar="NAME", help="the strategy's name and module (a Python identifier)")
    create.add_argument("--dir", type=Path, default=Path.cwd(), help="where to write (default: here)")
    args = parser.parse_args(argv)
    try:
        strategy, test = new(args.name, args.dir)
    except ValueError as exc:
        print(f"openbell strategy new: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {strategy} and {test}; run as strategy {args.name}:{class_name(args.name)} "
          f"with {strategy.parent} on PYTHONPATH")
    return 0
