"""mqhook.native: compiled modules when built, their pure-Python references otherwise, one warning each."""

from __future__ import annotations

import logging
import os
import sys

import pytest

import mqhook._eventjson_py
import mqhook._msgid_py
import mqhook._trie_py
from mqhook import matcher, native
from mqhook.broker import message
from mqhook.events import writer
from mqhook.native import NativeMissing, load

PAIRS = [
    ("mqhook._topic_trie", mqhook._trie_py),
    ("mqhook._msgid", mqhook._msgid_py),
    ("mqhook._eventjson", mqhook._eventjson_py),
]
IDS = ["trie", "msgid", "eventjson"]


@pytest.mark.parametrize(("compiled", "reference"), PAIRS, ids=IDS)
def test_a_missing_module_falls_back_with_one_warning(
    compiled: str, reference: object, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("MQHOOK_PURE_PYTHON", raising=False)
    monkeypatch.delenv("MQHOOK_REQUIRE_NATIVE", raising=False)
    monkeypatch.setitem(sys.modules, compiled, None)  # makes the import fail
    with caplog.at_level(logging.WARNING, logger="mqhook"):
        module, name = load(compiled, reference.__name__)  # type: ignore[attr-defined]
    assert (module, name) == (reference, "python")
    warnings = [r.getMessage() for r in caplog.records if r.name == "mqhook"]
    assert len(warnings) == 1
    assert compiled in warnings[0] and "build_ext --inplace" in warnings[0]


@pytest.mark.parametrize(("compiled", "reference"), PAIRS, ids=IDS)
def test_a_missing_module_is_refused_when_native_is_required(
    compiled: str, reference: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MQHOOK_PURE_PYTHON", raising=False)
    monkeypatch.setenv("MQHOOK_REQUIRE_NATIVE", "1")
    monkeypatch.setitem(sys.modules, compiled, None)  # makes the import fail
    with pytest.raises(NativeMissing, match=f"{compiled} is missing .* MQHOOK_REQUIRE_NATIVE=1"):
        load(compiled, reference.__name__)  # type: ignore[attr-defined]


@pytest.mark.parametrize(("compiled", "reference"), PAIRS, ids=IDS)
def test_env_var_forces_python(
    compiled: str, reference: object, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("MQHOOK_PURE_PYTHON", "1")
    monkeypatch.setenv("MQHOOK_REQUIRE_NATIVE", "1")  # an explicit choice of the references is still honoured
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


def test_the_loaded_choices_are_recorded_for_stats_and_metrics() -> None:
    assert {key: native.IMPLEMENTATIONS[key] for key in ("topic_trie", "msgid", "eventjson")} == {
        "topic_trie": matcher.IMPLEMENTATION,
        "msgid": message.IMPLEMENTATION,
        "eventjson": writer.IMPLEMENTATION,
    }


@pytest.mark.skipif(
    os.environ.get("MQHOOK_REQUIRE_NATIVE") != "1", reason="only where native modules are required (CI)"
)
def test_ci_runs_on_the_compiled_modules() -> None:
    assert (matcher.IMPLEMENTATION, message.IMPLEMENTATION, writer.IMPLEMENTATION) == ("cython",) * 3
