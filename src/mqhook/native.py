"""Chooses between a compiled accelerator from ext/ and its pure-Python reference, in one place.

Each compiled module in ``mqhook`` (built from ext/ by setup.py) has a pure-Python module with
the same API and the same results, which the tests hold them to. ``load`` returns the compiled
module when it is built and importable, else the reference, with one warning per missing module
that says how to build it. Two switches, read at each ``load``:

- ``MQHOOK_PURE_PYTHON=1`` forces every reference (tests use it to run the fallbacks; operators
  can use it to rule the extensions out);
- ``MQHOOK_REQUIRE_NATIVE=1`` refuses the fallback of a missing compiled module: ``load`` raises
  ``NativeMissing`` instead. CI sets it, so a build that silently failed cannot pass the tests on
  the references.

The modules, each loaded by the one module that uses it:

- ``mqhook._topic_trie`` / ``mqhook._trie_py``: the topic-filter trie (``mqhook.matcher``);
- ``mqhook._msgid`` / ``mqhook._msgid_py``: message ids (``mqhook.broker.message``);
- ``mqhook._eventjson`` / ``mqhook._eventjson_py``: message-event JSON (``mqhook.events.writer``).

``IMPLEMENTATIONS`` records the choice of each module loaded so far, for ``/api/v1/stats`` and
the ``mqhook_build_info`` metric.
"""

from __future__ import annotations

import importlib
import logging
import os
from types import ModuleType

from mqhook.errors import MqhookError

__all__ = ["IMPLEMENTATIONS", "NativeMissing", "load"]

log = logging.getLogger("mqhook")

PURE_PYTHON = "MQHOOK_PURE_PYTHON"
REQUIRE_NATIVE = "MQHOOK_REQUIRE_NATIVE"

IMPLEMENTATIONS: dict[str, str] = {}
"""``{"topic_trie": "cython", "msgid": ..., "eventjson": ...}``: "cython" or "python" per module loaded."""


class NativeMissing(MqhookError, ImportError):
    """A compiled module is missing while ``MQHOOK_REQUIRE_NATIVE=1``."""


def load(compiled: str, reference: str) -> tuple[ModuleType, str]:
    """``(module, "cython")`` for the compiled module, or ``(module, "python")`` for the reference."""
    key = compiled.rpartition(".")[2].lstrip("_")
    if os.environ.get(PURE_PYTHON) != "1":
        try:
            module = importlib.import_module(compiled)
        except ImportError as exc:
            if os.environ.get(REQUIRE_NATIVE) == "1":
                raise NativeMissing(
                    f"the compiled module {compiled} is missing ({exc}) and {REQUIRE_NATIVE}=1 refuses the "
                    f"pure-Python {reference}; build it with `python setup.py build_ext --inplace`"
                ) from exc
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
