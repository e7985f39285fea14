"""mqhook.native: compiled modules when built, their pure-Python references otherwise, one warning each."""

from __future__ import annotations

import logging
import sys

import pytest

import mqhook._eventjson_py
import mqhook._trie_py
from mqhook import matcher
from mqhook.events import writer
from mqhook.native import load

PAIRS = [("mqhook._topic_trie", mqhook._trie_py), ("mqhook._eventjson", mqhook._eventjson_py)]


@pytest.mark.parametrize(("compiled", "reference"), PAIRS, ids=["trie", "eventjson"])
def test_a_missing_module_falls_back_with_one_warning(
    compiled: str, reference: object, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("MQHOOK_PURE_PYTHON", raising=False)
    monkeypatch.setitem(sys.modules, compiled, None)  # makes the import fail
    with caplog.at_level(logging.WARNING, logger="mqhook"):
        module, name = load(compiled, reference.__name__)  # type: ignore[attr-defined]
    assert (module, name) == (reference, "python")
    warnings = [r.getMessage() for r in caplog.records if r.name == "mqhook"]
    assert len(warnings) == 1
    assert compiled in warnings[0] and "build_ext --inplace" in warnings[0]


@pytest.mark.parametrize(("compiled", "reference"), PAIRS, ids=["trie", "eventjson"])
def test_env_var_forces_python(
    compiled: str, reference: object, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("MQHOOK_PURE_PYTHON", "1")
    with caplog.at_level(logging.DEBUG, logger="mqhook"):
        assert load(compiled, reference.__name__) == (reference, "python")  # type: ignore[attr-defined]
    assert caplog.records == []


def test_the_compiled_modules_are_used_when_built() -> None:
    for compiled, _ in PAIRS:
        try:
            __import__(compiled)
        except ImportError:
            continue
        module, name = load(compiled, "unused")
        assert name == "cython" and module.__name__ == compiled
    assert matcher.IMPLEMENTATION in ("cython", "python") and writer.IMPLEMENTATION in ("cython", "python")
