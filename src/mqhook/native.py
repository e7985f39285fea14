"""Chooses between a compiled accelerator from ext/ and its pure-Python reference, in one place.

Each compiled module in ``mqhook`` (built from ext/ by setup.py) has a pure-Python module with
the same API and the same results, which the tests hold them to. ``load`` returns the compiled
module when it is built and importable, else the reference, with one warning per missing module
that says how to build it. ``MQHOOK_PURE_PYTHON=1`` forces every reference (tests use it to run
the fallbacks; operators can use it to rule the extensions out).

- ``mqhook._topic_trie`` / ``mqhook._trie_py``: the topic-filter trie (``mqhook.matcher``);
- ``mqhook._eventjson`` / ``mqhook._eventjson_py``: message-event JSON and message ids.
"""

from __future__ import annotations

import importlib
import logging
import os
from types import ModuleType

__all__ = ["load"]

log = logging.getLogger("mqhook")


def load(compiled: str, reference: str) -> tuple[ModuleType, str]:
    """``(module, "cython")`` for the compiled module, or ``(module, "python")`` for the reference."""
    if os.environ.get("MQHOOK_PURE_PYTHON") != "1":
        try:
            return importlib.import_module(compiled), "cython"
        except ImportError as exc:
            log.warning(
                "mqhook: the compiled module %s is missing (%s); using the slower pure-Python %s. "
                "Build it with `python setup.py build_ext --inplace` from the source tree (needs Cython "
                "and a C compiler), or reinstall mqhook where they are available",
                compiled,
                exc,
                reference,
            )
    return importlib.import_module(reference), "python"
