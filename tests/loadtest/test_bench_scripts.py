"""bench/e2e_webhook.py and bench/e2e_metrics.py are built on the harness (brokers, generator, sink):
a tiny run of each keeps them working when the harness changes. No timing assertions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def script(name: str, *args: str, timeout: float = 100.0) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MQHOOK_")}
    env["PYTHONPATH"] = str(ROOT / "src") + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    cmd = [sys.executable, str(ROOT / "bench" / name), *args]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False)


@pytest.mark.slow
def test_e2e_webhook(tmp_path: Path) -> None:
    out = tmp_path / "e2e.json"
    proc = script("e2e_webhook.py", "--only", "baseline,unrelated,batch100", "--repeat", "1", "--messages", "3000",
                  "--scenario-timeout", "40", "--stall-webhook", "10", "--json", str(out))  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "x base" in proc.stdout and "events/s" in proc.stdout
    rows = {r["key"]: r for r in json.loads(out.read_text())["summary"]}
    assert set(rows) == {"baseline", "unrelated", "batch100"}
    assert rows["baseline"]["runs"] == 3 and rows["baseline"]["sub_lost"] == 0
    assert rows["baseline"]["msg_per_s"] > 0 and rows["baseline"]["broker_cpu_us_per_msg"] is not None
    assert rows["unrelated"]["events_lost"] == 0 and rows["unrelated"]["events_per_s"] == 0
    hooked = rows["batch100"]
    assert hooked["sub_lost"] == 0 and hooked["events_lost"] == 0 and hooked["webhook_dropped"] == 0
    assert hooked["events_per_s"] > 0 and hooked["x_msg"] is not None


@pytest.mark.slow
def test_e2e_metrics(tmp_path: Path) -> None:
    out = tmp_path / "metrics.json"
    proc = script("e2e_metrics.py", "--messages", "3000", "--repeat", "1", "--probe", "5", "--webhooks", "1",
                  "--interval", "0.05", "--run-timeout", "30", "--json", str(out))  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads(out.read_text())
    assert doc["summary"]["runs"] == 4 and doc["summary"]["lost"] == 0
    assert all(r["msg_per_s"] > 0 for r in doc["runs"])
