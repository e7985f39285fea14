"""Both implementations of a module of ext/: the compiled one (when it is built) and its reference."""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

import pytest


def compiled(name: str) -> ModuleType | None:
    """The compiled module ``name`` (e.g. ``mqhook._msgid``), or None where it is not built."""
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def both(name: str, reference: Any, attr: str | None = None) -> list[Any]:
    """pytest params ``cython`` (skipped where not built) and ``python``: the modules, or their ``attr``."""
    module = compiled(name)
    built: Any = module if attr is None or module is None else getattr(module, attr)
    ref = reference if attr is None else getattr(reference, attr)
    reason = f"{name} is not built: run `python setup.py build_ext --inplace`"
    return [
        pytest.param(built, id="cython", marks=pytest.mark.skipif(module is None, reason=reason)),
        pytest.param(ref, id="python"),
    ]
