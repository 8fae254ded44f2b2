"""From the spelling of a run's ``strategy`` to its class, whatever package it lives in.

Three spellings, tried in this order: ``module:Class`` (any class Airflow's workers can import, e.g. from a
directory on ``PYTHONPATH``); a registered name (the built-ins, :func:`~openbell.strategy.base.register`); a
name an installed package publishes in the entry-point group :data:`GROUP`. :func:`resolve` is the one way
from a spelling to a class; what it returns meets the contract (:mod:`openbell.strategy.contract`), and what
it refuses raises :class:`InvalidParams` saying why.
"""

from __future__ import annotations

import importlib
from functools import cache
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from openbell.strategy.base import InvalidParams, StrategyClass, names, registered
from openbell.strategy.contract import check

GROUP = "openbell.strategies"


def resolve(spec: str) -> StrategyClass:
    """The strategy class ``spec`` names; :class:`InvalidParams` when it names none or a class that does not
    meet the contract."""
    if not (isinstance(spec, str) and spec):
        raise InvalidParams(f"strategy must be a non-empty str, got {spec!r}")
    if ":" in spec:
        return check(_imported(spec), spec)
    found = registered(spec)
    if found is None:
        found = _loaded(spec)
    return check(found, spec)


def known() -> list[str]:
    """The names a run may use without a colon: the registered ones and the published ones."""
    return sorted({*names(), *published()})


@cache
def published() -> dict[str, EntryPoint]:
    """The installed packages' entry points of :data:`GROUP`, by name (read once per process)."""
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def split_path(spec: str) -> tuple[str, str]:
    """``(module, attribute)`` of a ``module:Class`` spelling; :class:`InvalidParams` when malformed."""
    if spec.count(":") != 1:
        raise InvalidParams(f"strategy {spec!r}: a class is named module:Class, with a single ':'")
    module, attribute = spec.split(":")
    if not module:
        raise InvalidParams(f"strategy {spec!r}: the module is missing before ':' (module:Class)")
    if not attribute:
        raise InvalidParams(f"strategy {spec!r}: the class is missing after ':' (module:Class)")
    for part, what in ((module, "module"), (attribute, "class")):
        if not all(p.isidentifier() for p in part.split(".")):
            raise InvalidParams(f"strategy {spec!r}: {part!r} is not a {what} name")
    return module, attribute


def _imported(spec: str) -> Any:
    module, attribute = split_path(spec)
    try:
        found: Any = importlib.import_module(module)
    except Exception as exc:
        raise InvalidParams(f"strategy {spec!r}: module {module!r} does not import: "
                            f"{type(exc).__name__}: {exc}") from None
    for part in attribute.split("."):
        if not hasattr(found, part):
            raise InvalidParams(f"strategy {spec!r}: module {module!r} has no {attribute!r}")
        found = getattr(found, part)
    return found


def _loaded(name: str) -> Any:
    ep = published().get(name)
    if ep is None:
        raise InvalidParams(f"unknown strategy {name!r}; known: {', '.join(known())} "
                            f"(or name a class as module:Class)")
    try:
        return ep.load()
    except Exception as exc:
        raise InvalidParams(f"strategy {name!r}: entry point {ep.value!r} ({GROUP}) does not load: "
                            f"{type(exc).__name__}: {exc}") from None
