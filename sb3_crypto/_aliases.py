"""Lazy aliases for names whose module moved (PEP 562 module ``__getattr__``).

A moved module keeps a small file at its old path whose ``__getattr__`` imports the new module
only when an old name is used, and warns with :class:`DeprecationWarning`. Nothing is imported
eagerly, so an alias never brings back an import cycle, and the layer contract (``lint-imports``)
does not see the old path as depending on the new one.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable, Mapping
from typing import Any


def _resolve(old: str, name: str, target: str) -> Any:
    module_name, _, attribute = target.partition(":")
    attribute = attribute or name
    warnings.warn(
        f"{old}.{name} has moved to {module_name}.{attribute}; import it from there "
        "(the old path will be removed in a future release)",
        DeprecationWarning,
        stacklevel=3,
    )
    return getattr(importlib.import_module(module_name), attribute)


def moved_module(old: str, new: str) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for a module ``old`` whose whole content moved to ``new``."""

    def __getattr__(name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return _resolve(old, name, new)

    def __dir__() -> list[str]:
        return sorted(n for n in dir(importlib.import_module(new)) if not n.startswith("_"))

    return __getattr__, __dir__


def moved_names(old: str, targets: Mapping[str, str]) -> Callable[[str], Any]:
    """``__getattr__`` for a module that still exists but whose names in ``targets`` moved.

    :param targets: old name -> ``"new.module"`` (same name) or ``"new.module:new_name"``.
    """

    def __getattr__(name: str) -> Any:
        if name not in targets:
            raise AttributeError(f"module {old!r} has no attribute {name!r}")
        return _resolve(old, name, targets[name])

    return __getattr__
