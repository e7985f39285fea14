"""Builds the Cython modules in ext/ (topic trie, event JSON). Without a compiler, mqhook installs and runs on
their pure-Python references (see src/mqhook/native.py)."""

import os

from setuptools import setup
from setuptools.command.build_ext import build_ext


class OptionalBuildExt(build_ext):
    """A failed extension build is not a failed install: mqhook falls back to its Python trie."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # noqa: BLE001 - any compiler failure means "use the fallback"
            print(f"mqhook: Cython extensions not built ({exc}); the pure-Python fallbacks will be used")

    def build_extension(self, ext) -> None:  # type: ignore[no-untyped-def]
        try:
            super().build_extension(ext)
        except Exception as exc:  # noqa: BLE001
            print(f"mqhook: extension {ext.name} not built ({exc}); the pure-Python fallback will be used")


def extensions() -> list:
    if os.environ.get("MQHOOK_NO_EXT"):
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        return []
    from setuptools import Extension

    exts = [
        Extension("mqhook._topic_trie", ["ext/topic_trie.pyx"]),
        Extension("mqhook._eventjson", ["ext/eventjson.pyx"]),
    ]
    return cythonize(exts, compiler_directives={"language_level": "3"}, quiet=True)


setup(ext_modules=extensions(), cmdclass={"build_ext": OptionalBuildExt})
