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

__all__ = ["IMPLEMENTATIONS", "load"]

log = logging.getLogger("mqhook")

# Which implementation each module loaded so far uses: {"topic_trie": "cython", "eventjson": ...};
# reported by /api/v1/stats ("build") and the labels of mqhook_build_info.
IMPLEMENTATIONS: dict[str, str] = {}


def load(compiled: str, reference: str) -> tuple[ModuleType, str]:
    """``(module, "cython")`` for the compiled module, or ``(module, "python")`` for the reference."""
    key = compiled.rpartition(".")[2].lstrip("_")
    if os.environ.get("MQHOOK_PURE_PYTHON") != "1":
        try:
            module = importlib.import_module(compiled)
        except ImportError as exc:
            log.warning(
                "mqhook: the compiled module %s is missing (%s); using the slower pure-Python %s. "
                "Build it with `python setup.py build_ext --inplace` from the source tree (needs Cython "
                "and a C compiler), or reinstall mqhook where they are available",
                compiled,
                exc,
                reference,
            )
        else:
            IMPLEMENTATIONS[key] = "cython"
            return module, "cython"
    IMPLEMENTATIONS[key] = "python"
    return importlib.import_module(reference), "python"


def implementations() -> dict[str, str]:
    """``IMPLEMENTATIONS`` once the broker's modules are imported (each is "cython" or "python")."""
    import mqhook.events.writer
    import mqhook.matcher  # noqa: F401  - loads topic_trie

    return dict(IMPLEMENTATIONS)
