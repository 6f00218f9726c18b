"""Unlearning methods behind one interface; ``METHODS`` maps a name to its class.

Adding a method means adding one module here: a config dataclass with typed,
documented defaults and either a function decorated with ``@iterative`` (a method that
trains in epochs under the budget rule, :mod:`tarf.methods.loop`) or a ``Method``
subclass decorated with ``@register``. Every module of this package is imported at
start-up.
"""

import importlib
import pkgutil

from tarf.methods.base import (
    METHODS,
    Method,
    MethodResult,
    UnlearnContext,
    UnlearnData,
    get_method,
    parse_set,
)

for _mod in pkgutil.iter_modules(__path__):
    if _mod.name not in ("base", "common"):
        importlib.import_module(f"{__name__}.{_mod.name}")

__all__ = [
    "METHODS",
    "Method",
    "MethodResult",
    "UnlearnContext",
    "UnlearnData",
    "get_method",
    "parse_set",
]
