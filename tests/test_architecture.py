"""The package's import graph: no cycle anywhere, and nothing imported upward.

Every module under ``include/openbell`` is parsed with :mod:`ast` (nothing is imported). An edge A -> B is
any ``import`` of B in A, at module level, inside a function or under ``if TYPE_CHECKING`` alike: a
function-level import only hides a cycle, it does not break it. ``from P import name`` is an edge to the
submodule ``P.name`` when there is one, else to ``P``. Importing ``a.b.c`` also runs ``a/__init__``; those
implicit edges are not counted, so a package ``__init__`` that re-exports its modules is no cycle.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

PACKAGE = "openbell"
ROOT = Path(__file__).resolve().parents[1] / "include"

# Leaves: modules any part may use because they import nothing of openbell.
LEAVES = ("openbell.calendar", "openbell.clock", "openbell.paths", "openbell.jsonutil", "openbell.dberrors",
          "openbell.risk.state")


@dataclass(frozen=True)
class Edge:
    importer: str
    imported: str
    path: Path
    line: int

    def __str__(self) -> str:
        return f"{self.importer} -> {self.imported} ({self.path.relative_to(ROOT.parent)}:{self.line})"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def modules() -> dict[str, Path]:
    """Every module of the package by dotted name."""
    return {_module_name(p): p for p in sorted((ROOT / PACKAGE).rglob("*.py")) if "__pycache__" not in p.parts}


def _imported_names(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> Iterable[str]:
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
        return
    if node.level:  # relative: resolve against the importing module's package
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        source = ".".join(base + ([node.module] if node.module else []))
    else:
        source = node.module or ""
    for alias in node.names:
        yield f"{source}.{alias.name}" if f"{source}.{alias.name}" in modules() else source


def _owner(name: str) -> str | None:
    """The package module ``name`` denotes (``a.b.Thing`` -> ``a.b``), or None outside the package."""
    while name:
        if name in modules():
            return name
        name = name.rpartition(".")[0]
    return None


@cache
def edges() -> tuple[Edge, ...]:
    """Every import of a package module by another, with where it is written."""
    found: dict[tuple[str, str], Edge] = {}
    for module, path in modules().items():
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            for name in _imported_names(node, module, path.name == "__init__.py"):
                target = _owner(name)
                if target is not None and target != module and (module, target) not in found:
                    found[(module, target)] = Edge(module, target, path, node.lineno)
    return tuple(sorted(found.values(), key=lambda e: (e.importer, e.imported)))


def _graph() -> dict[str, list[Edge]]:
    graph: dict[str, list[Edge]] = {m: [] for m in modules()}
    for edge in edges():
        graph[edge.importer].append(edge)
    return graph


def _strongly_connected(graph: dict[str, list[Edge]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative: the components with more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = len(index)
                stack.append(node)
                on_stack.add(node)
            if i < len(graph[node]):
                work.append((node, i + 1))
                nxt = graph[node][i].imported
                if nxt not in index:
                    work.append((nxt, 0))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def _a_cycle(graph: dict[str, list[Edge]], component: list[str]) -> list[Edge]:
    """One concrete cycle through the component's first module (breadth first: the shortest)."""
    members = set(component)
    start = component[0]
    came: dict[str, Edge] = {}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for edge in graph[node]:
            if edge.imported not in members:
                continue
            if edge.imported == start:
                path = [edge]
                while path[0].importer != start:
                    path.insert(0, came[path[0].importer])
                return path
            if edge.imported not in came:
                came[edge.imported] = edge
                queue.append(edge.imported)
    raise AssertionError(f"no cycle through {start} in {component}")


def import_cycles() -> list[list[Edge]]:
    """One cycle per strongly connected component of the import graph."""
    graph = _graph()
    return [_a_cycle(graph, component) for component in _strongly_connected(graph)]


def _outside(allowed: Iterable[str], importers: Iterable[str]) -> list[Edge]:
    """Edges from ``importers`` to package modules not in (or under) ``allowed``."""
    ok = tuple(allowed)
    wanted = set(importers)
    return [e for e in edges() if e.importer in wanted and not any(
        e.imported == a or e.imported.startswith(a + ".") for a in ok)]


def _under(prefix: str) -> list[str]:
    return [m for m in modules() if m == prefix or m.startswith(prefix + ".")]


def _listing(found: Iterable[object]) -> str:
    return "\n  ".join(str(f) for f in found)


# -- the graph ------------------------------------------------------------------------------------------


def test_the_graph_sees_every_kind_of_import() -> None:
    names = {(e.importer, e.imported) for e in edges()}
    assert len(modules()) > 50
    assert ("openbell.sim.server", "openbell.sim.rest") in names  # from openbell.sim import rest
    assert ("openbell.store.db", "openbell.dberrors") in names  # module level
    assert ("openbell.runtime.db_cli", "openbell.store.db") in names  # function level


def test_no_import_cycle_in_the_package() -> None:
    cycles = import_cycles()
    report = "\n".join(f"- {' | '.join(str(e) for e in cycle)}" for cycle in cycles)
    assert not cycles, (
        f"{len(cycles)} import cycle(s) in the openbell package (importer -> imported, file:line). Break each by "
        f"moving what both sides need into a module below both; a function-level import does not count as a "
        f"fix.\n{report}"
    )


# -- nothing imported upward ----------------------------------------------------------------------------


def test_leaves_import_nothing_of_openbell() -> None:
    found = _outside((), LEAVES)
    assert not found, "leaf modules must import nothing of openbell:\n  " + _listing(found)


def test_the_store_imports_only_the_store_and_leaves() -> None:
    """The store sits below the trading core and the tools: no embedded-Postgres tool, no runtime."""
    found = _outside(("openbell.store", *LEAVES), _under("openbell.store"))
    assert not found, "openbell.store imports from above it:\n  " + _listing(found)


def test_the_simulator_imports_nothing_of_the_core() -> None:
    """A wire-level test double: the simulator uses leaves (the NYSE calendar, the JSON encoder) and the CPU
    scheduling helper; only its test harness (SimProcess) builds client settings with the Alpaca adapter's config."""
    allowed = ("openbell.sim", "openbell.cpu", *LEAVES)
    harness = "openbell.sim.testing"
    found = _outside(allowed, [m for m in _under("openbell.sim") if m != harness])
    found += _outside((*allowed, "openbell.adapters.alpaca.config"), [harness])
    assert not found, "the simulator imports openbell's core:\n  " + _listing(found)


PG = "openbell.pg"


def test_the_embedded_postgres_tool_imports_only_leaves() -> None:
    """openbell.pg's modules import one another and the leaves, nothing else of openbell."""
    found = _outside((PG, *LEAVES), _under(PG))
    assert not found, "openbell.pg imports from above it:\n  " + _listing(found)


def test_only_commands_import_the_embedded_postgres_tool() -> None:
    """openbell.pg starts servers: the commands (runtime/, report) use it; everything else meets the database
    through a URL and openbell.dberrors (DatabaseUnavailable, redact)."""
    allowed = ("openbell.runtime", "openbell.report", PG)  # the commands, and the tool's own modules
    found = [e for e in edges() if (e.imported == PG or e.imported.startswith(PG + "."))
             and not any(e.importer == a or e.importer.startswith(a + ".") for a in allowed)]
    assert not found, ("only the commands may import openbell.pg; import DatabaseUnavailable/redact from "
                       "openbell.dberrors instead:\n  " + _listing(found))


def test_nothing_imports_the_commands() -> None:
    """runtime/ (demo, drills, the local stack, openbell db) and the CLI sit on top: nothing below imports them."""
    top = ("openbell.runtime", "openbell.cli")
    found = [e for e in edges() if any(e.imported == t or e.imported.startswith(t + ".") for t in top)
             and not any(e.importer == t or e.importer.startswith(t + ".") for t in top)]
    assert not found, "modules import the commands above them:\n  " + _listing(found)


# -- ports and adapters ---------------------------------------------------------------------------------

ADAPTER = "openbell.adapters.alpaca"
VENUE_SDK = "alpaca"  # alpaca-py's top-level package
# alpaca-py internals the adapter relies on (pinned by tests/adapters/test_alpaca_adapter.py)
PRIVATE_SDK_ATTRIBUTES = re.compile(r"\.(_start_ws|_run_forever|_dispatch|_session|_retry|_reconnect_\w*)\b")


def _sdk_imports(module: str) -> list[str]:
    """Where ``module`` imports alpaca-py (any level, as ``path:line``)."""
    path = modules()[module]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level:
            names = [node.module or ""]
        else:
            continue
        if any(n == VENUE_SDK or n.startswith(VENUE_SDK + ".") for n in names):
            found.append(f"{path.relative_to(ROOT.parent)}:{node.lineno}")
    return found


def test_only_the_alpaca_adapter_and_the_simulator_import_alpaca_py() -> None:
    """The core works on openbell.ports; alpaca-py stays behind the adapter (and in the wire-level simulator)."""
    allowed = (ADAPTER, "openbell.sim")
    found = [where for m in modules() if not any(m == a or m.startswith(a + ".") for a in allowed)
             for where in _sdk_imports(m)]
    assert not found, "alpaca-py imported outside openbell.adapters.alpaca and openbell.sim:\n  " + _listing(found)
    assert _sdk_imports(f"{ADAPTER}.broker"), "the check sees no alpaca-py import at all"


def test_no_private_alpaca_py_attribute_is_used_outside_the_adapter() -> None:
    """``_start_ws``, ``_run_forever``, ``_dispatch``, ``_session``, ``_retry``, ``_reconnect_*``: only the
    adapter patches alpaca-py's internals (openbell's own classes avoid those attribute names)."""
    found = []
    for module, path in modules().items():
        if module == ADAPTER or module.startswith(ADAPTER + "."):
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if PRIVATE_SDK_ATTRIBUTES.search(line):
                found.append(f"{path.relative_to(ROOT.parent)}:{number}: {line.strip()}")
    assert not found, "alpaca-py internals used outside the adapter:\n  " + _listing(found)
    adapter_text = "".join(p.read_text() for m, p in modules().items() if m.startswith(ADAPTER + "."))
    assert PRIVATE_SDK_ATTRIBUTES.search(adapter_text), "the pattern matches nothing the adapter does"


def test_the_ports_import_no_adapter_and_the_core_no_concrete_adapter() -> None:
    """Dependencies point one way: core -> ports <- adapters. Only the composition roots (the workflow, the
    commands, the Trading view and the simulator's harness) build adapters; the live loop takes its ports."""
    roots = ("openbell.workflow", "openbell.runtime", "openbell.ui", "openbell.sim.testing",
             ADAPTER)
    found = [e for e in edges() if e.imported.startswith("openbell.adapters")
             and not any(e.importer == r or e.importer.startswith(r + ".") for r in roots)]
    assert not found, "modules outside the composition roots import an adapter:\n  " + _listing(found)
    assert not [e for e in edges() if e.importer == "openbell.ports" and not e.imported.startswith("openbell.strategy")]



# -- the UI and the risk state ---------------------------------------------------------------------------


def test_the_ui_imports_no_step_of_the_workflow() -> None:
    """The Trading view reads the store and asks Airflow; of the workflow it uses only the hooks."""
    found = [e for e in edges() if e.importer.startswith("openbell.ui") and e.imported.startswith("openbell.workflow")
             and e.imported != "openbell.workflow.hooks"]
    assert not found, "the Trading view imports the workflow's steps:\n  " + _listing(found)
    assert any(e.importer.startswith("openbell.ui") and e.imported == "openbell.workflow.hooks" for e in edges())


RISK_WRITERS = {"openbell.store.sessions", "openbell.trading.risklink", "openbell.workflow.control"}


def test_only_the_risk_package_moves_the_risk_state() -> None:
    """Live, the state changes only inside ``openbell.risk.owner``; stored, only through ``set_risk``, called by the
    loss stop's coordinator and trading_control (which checks the move first)."""
    assigned, stored = [], []
    for module, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target] \
                if isinstance(node, ast.AugAssign | ast.AnnAssign) else []
            for t in targets:
                if (isinstance(t, ast.Attribute) and t.attr == "state" and isinstance(t.value, ast.Attribute)
                        and t.value.attr == "risk" and module != "openbell.risk.owner"):
                    assigned.append(f"{path.relative_to(ROOT.parent)}:{node.lineno}")
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name | ast.Attribute)
                    and (node.func.id if isinstance(node.func, ast.Name) else node.func.attr) == "set_risk"
                    and module not in RISK_WRITERS):
                stored.append(f"{path.relative_to(ROOT.parent)}:{node.lineno}")
    assert not assigned, "the risk state assigned outside openbell.risk.owner:\n  " + _listing(assigned)
    assert not stored, f"set_risk called outside {sorted(RISK_WRITERS)}:\n  " + _listing(stored)


# -- the rules as docs/architecture.md states them ------------------------------------------------------

DOC = ROOT.parent / "docs" / "architecture.md"


def test_every_rule_the_architecture_doc_states_is_checked_here() -> None:
    """docs/architecture.md's Rules list names the test of each rule: every name is a test of this module, and
    every test of this module that checks the package is listed."""
    text = DOC.read_text()
    rules = text.split("## Rules", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"`(test_\w+)`", rules))
    here = {name for name in globals() if name.startswith("test_")}
    meta = {"test_the_graph_sees_every_kind_of_import", "test_every_rule_the_architecture_doc_states_is_checked_here"}
    assert named, "the Rules section names no test"
    assert named <= here, f"rules naming no test: {sorted(named - here)}"
    assert here - meta <= named, f"checks the Rules section does not state: {sorted(here - meta - named)}"


MAX_LINES = 400


def test_no_module_of_the_package_is_over_400_lines() -> None:
    """One capability per module: a module that grows past this is doing more than one job."""
    long = {str(p.relative_to(ROOT)): n for p in sorted((ROOT / PACKAGE).rglob("*.py"))
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}, f"modules over {MAX_LINES} lines: {long}"
