"""How an order worker rebuilds the broker port it was sent (:meth:`AlpacaBroker.__reduce__
<openbell.adapters.alpaca.broker.AlpacaBroker.__reduce__>`), importing only what sending orders needs. A leaf:
the port's class is named, not imported, so the deferral comes before alpaca-py loads.

alpaca-py's trading package imports pandas (and with it numpy) for one validator of a request the order workers
never make (the portfolio history's dates): about 50 MiB of every worker's memory for nothing. A process that
rebuilds the port before it has imported pandas gets a stand-in module instead (:class:`DeferredModule`), which
imports the real pandas the first time any of its names is used, so nothing behaves differently; it only never
loads in a worker that never uses it. A process that already imported pandas (the live loop, a test) keeps it.
The standard library's :class:`importlib.util.LazyLoader` does not serve here: the import statement itself
reads the lazy module's ``__spec__``, which loads it.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

DEFERRED = ("pandas",)  # imported by alpaca-py's trading package, used by no request a worker sends


class DeferredModule(types.ModuleType):
    """A stand-in for the module of its name in ``sys.modules``: the first use of a name imports the real
    module (which then replaces it in ``sys.modules``) and answers from it."""

    def __repr__(self) -> str:
        return f"<deferred module {self.__name__!r}>"

    def __getattr__(self, name: str) -> Any:
        if sys.modules.get(self.__name__) is self:
            del sys.modules[self.__name__]
        return getattr(importlib.import_module(self.__name__), name)


def defer(*names: str) -> None:
    """Stand-ins for the modules ``names`` that are not imported yet (see :class:`DeferredModule`)."""
    for name in names:
        if name not in sys.modules:
            sys.modules[name] = DeferredModule(name)


def rebuilt(module: str, name: str, state: dict[str, Any]) -> Any:
    """The object of class ``name`` in ``module`` pickled as ``state``, with alpaca-py's pandas deferred."""
    defer(*DEFERRED)
    cls = getattr(importlib.import_module(module), name)
    obj = cls.__new__(cls)
    obj.__setstate__(state)
    return obj
