"""Deprecation shims for the modules of the flat 0.1 layout (kept for one release).

Each old module (``crowdlens.models``, ``crowdlens.annotate`` …) is a file whose
module-level ``__getattr__`` finds a name in its new home, warns once per use with a
``DeprecationWarning`` that names the new path, and returns it — as QuantEcon.py does
for its moved modules.
"""

from __future__ import annotations

import importlib
import warnings
from typing import Callable


def moved_module(old: str, homes: list[str], renamed: dict[str, str] | None = None) -> Callable:
    """A module ``__getattr__`` for the old module ``old``: names are looked up in
    ``homes`` in order; ``renamed`` maps an old name to ``"module.new_name"``."""
    renamed = renamed or {}

    def __getattr__(name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        if name in renamed:
            module, _, new_name = renamed[name].rpartition(".")
            candidates = [(module, new_name)]
        else:
            candidates = [(home, name) for home in homes]
        for module, new_name in candidates:
            found = importlib.import_module(module)
            if hasattr(found, new_name):
                warnings.warn(f"{old}.{name} has moved to {module}.{new_name}; the old path will be removed "
                              "in the next release", DeprecationWarning, stacklevel=2)
                return getattr(found, new_name)
        raise AttributeError(f"module {old!r} has no attribute {name!r} (nor has {', '.join(homes)}, "
                             "where names moved out of it in the layered layout live)")

    return __getattr__
