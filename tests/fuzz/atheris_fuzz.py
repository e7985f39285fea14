"""The atheris (libFuzzer) driver of the fuzz targets in ``harness.py``: raw, coverage-guided bytes.

    .venv/bin/python tests/fuzz/atheris_fuzz.py TARGET [CORPUS_DIR ...] [libFuzzer flags]

TARGET is ``codec``, ``ws`` or ``http``. The first corpus directory is where new inputs are kept;
when it is empty it is seeded with ``harness.seeds(TARGET)``. A crash (an exception, a broken
invariant, RSS over ``-rss_limit_mb``) is written as ``crash-<sha1>`` under ``-artifact_prefix``;
to reproduce it, pass that file instead of a directory:

    .venv/bin/python tests/fuzz/atheris_fuzz.py codec build/fuzz/crashes/codec/crash-...

``make fuzz`` runs every target this way (see the Makefile); ``tests/fuzz/test_atheris.py`` runs a
few seconds of each as part of the tests.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/: ``fuzz.harness``

with atheris.instrument_imports(include=["mqhook", "wsproto", "h11"]):
    import wsproto  # noqa: F401

    import mqhook.mqtt.codec
    import mqhook.mqtt.codec_connect
    import mqhook.mqtt.codec_subscribe
    import mqhook.mqtt.properties
    import mqhook.mqtt.wire
    import mqhook.server.ws
    import mqhook.webhook.http  # noqa: F401  (instrumented before the harness imports them)

from fuzz import harness


def _seed(target: str, argv: list[str]) -> None:
    """Put the seeds in the first corpus directory if it is empty."""
    dirs = [Path(a) for a in argv[2:] if not a.startswith("-")]
    if not dirs or not dirs[0].is_dir() or any(dirs[0].iterdir()):
        return
    for seed in harness.seeds(target):
        (dirs[0] / hashlib.sha1(seed).hexdigest()).write_bytes(seed)


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in harness.TARGETS:
        sys.exit(f"usage: {sys.argv[0]} {{{','.join(harness.TARGETS)}}} [CORPUS_DIR ...] [libFuzzer flags]")
    target = sys.argv[1]
    _seed(target, sys.argv)
    one = harness.TARGETS[target]
    atheris.Setup([sys.argv[0], *sys.argv[2:]], one)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
