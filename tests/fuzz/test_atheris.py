"""A few seconds of each atheris target (raw, coverage-guided bytes; ``atheris_fuzz.py``), seeded
with ``harness.seeds``. Skipped when atheris is not installed (``pip install -e '.[fuzz]'``);
``make fuzz`` is the long run."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from .harness import TARGETS

DRIVER = Path(__file__).with_name("atheris_fuzz.py")
SECONDS = 3  # of fuzzing per target, after instrumentation (about a second)

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("atheris") is None,
    reason="atheris is not installed (pip install -e '.[fuzz]'; a manylinux wheel, no clang needed on x86_64)",
)


@pytest.mark.parametrize("target", list(TARGETS))
def test_a_short_atheris_run_finds_nothing(target: str, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    crashes = tmp_path / "crashes"
    corpus.mkdir()
    crashes.mkdir()
    cmd = [
        sys.executable,
        str(DRIVER),
        target,
        str(corpus),
        f"-artifact_prefix={crashes}/",
        f"-max_total_time={SECONDS}",
        "-rss_limit_mb=1024",
        "-timeout=5",
        "-print_final_stats=1",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, errors="replace", check=False)
    found = sorted(p.name for p in crashes.iterdir())
    assert proc.returncode == 0 and not found, (
        f"atheris {target}: exit {proc.returncode}, artifacts {found}\n{proc.stderr[-4000:]}"
    )
    assert any(corpus.iterdir()), "the corpus was not seeded"
    assert "stat::number_of_executed_units" in proc.stderr
