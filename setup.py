"""Builds the Cython modules in ext/ (topic trie, event JSON, message ids).

Without Cython or a C compiler, mqhook installs and runs on their pure-Python references (see
src/mqhook/native.py), and says so here and once at start-up. With ``MQHOOK_REQUIRE_NATIVE=1``
(set by CI) a missing Cython or a failed compile fails the build instead, so the compiled modules
are always the ones tested there.
"""

import os

from setuptools import setup
from setuptools.command.build_ext import build_ext

REQUIRED = os.environ.get("MQHOOK_REQUIRE_NATIVE") == "1"


class OptionalBuildExt(build_ext):
    """A failed extension build is not a failed install (mqhook falls back to its Python references),
    unless MQHOOK_REQUIRE_NATIVE=1."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # noqa: BLE001 - any compiler failure means "use the fallback"
            if REQUIRED:
                raise
            print(f"mqhook: Cython extensions not built ({exc}); the pure-Python fallbacks will be used")

    def build_extension(self, ext) -> None:  # type: ignore[no-untyped-def]
        try:
            super().build_extension(ext)
        except Exception as exc:  # noqa: BLE001
            if REQUIRED:
                raise
            print(f"mqhook: extension {ext.name} not built ({exc}); the pure-Python fallback will be used")


def extensions() -> list:
    if os.environ.get("MQHOOK_NO_EXT"):
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        if REQUIRED:
            raise SystemExit("mqhook: MQHOOK_REQUIRE_NATIVE=1 but Cython is not installed") from None
        print("mqhook: Cython is not installed: the extensions in ext/ are not built, the pure-Python fallbacks are used")
        return []
    from setuptools import Extension

    exts = [
        Extension("mqhook._topic_trie", ["ext/topic_trie.pyx"]),
        Extension("mqhook._eventjson", ["ext/eventjson.pyx"]),
        Extension("mqhook._msgid", ["ext/msgid.pyx"]),
    ]
    return cythonize(exts, compiler_directives={"language_level": "3"}, quiet=True)


setup(ext_modules=extensions(), cmdclass={"build_ext": OptionalBuildExt})
