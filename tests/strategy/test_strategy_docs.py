"""docs/strategies.md shows the example strategy the tests run, unchanged."""

from __future__ import annotations

import re
from pathlib import Path

import ob_example

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "strategies.md"
EXAMPLE = ROOT / "tests" / "strategies" / "ob_example" / "__init__.py"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```$", text, flags=re.DOTALL | re.MULTILINE)


def test_the_worked_example_is_the_tested_code() -> None:
    assert Path(ob_example.__file__).resolve() == EXAMPLE  # the module the tests import is this file
    assert EXAMPLE.read_text() in python_blocks(DOC.read_text())


def test_the_readme_and_the_architecture_page_point_at_it() -> None:
    assert "(docs/strategies.md)" in (ROOT / "README.md").read_text()
    architecture = (ROOT / "docs" / "architecture.md").read_text()
    assert "strategies.md" in architecture and "vector_targets" in architecture and "resolve" in architecture
