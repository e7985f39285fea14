"""The admin store shared by the workers of ``mqhook run --workers N``: several processes open one
new database at the same moment (real processes, real SQLite files)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from mqhook.admin.store import Store

# Each process waits for the go file, then opens the store and makes sure of the first admin.
_CHILD = """
import os, sys, time
from mqhook.admin.auth import ensure_admin
from mqhook.admin.store import Store
go = sys.argv[2]
open(go + "." + str(os.getpid()), "w").close()  # ready
while not os.path.exists(go):
    time.sleep(0.001)
store = Store(sys.argv[1])
ensure_admin(store, None, out=sys.stdout)
print("ID", store.id, flush=True)
"""


def test_processes_starting_at_once_share_one_store_and_one_first_admin(tmp_path: Path) -> None:
    data, go = tmp_path / "data", tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(data), str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(6)
    ]
    deadline = time.monotonic() + 30
    while len(list(tmp_path.glob("go.*"))) < len(procs) and time.monotonic() < deadline:
        time.sleep(0.01)  # every child imported and waits for the go file
    go.touch()
    outs = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in outs]
    printed = [line for out, _ in outs for line in out.splitlines() if "created the administrator" in line]
    assert len(printed) == 1, printed  # one process added admin, and only it printed a password
    ids = {line.split()[1] for out, _ in outs for line in out.splitlines() if line.startswith("ID ")}
    assert len(ids) == 1  # one store id: the workers' announcements name it
    store = Store(data)
    try:
        assert [row[0] for row in store.users()] == ["admin"]
        assert store.id in ids
    finally:
        store.close()


def test_a_write_of_one_process_is_read_by_another(tmp_path: Path) -> None:
    a, b = Store(tmp_path), Store(tmp_path)
    try:
        assert a.id == b.id
        a.add_token("h" * 64, "admin", time.time() + 60)
        a.add_token("e" * 64, "admin", time.time() - 1)
        assert [row[0] for row in b.live_tokens(time.time())] == ["h" * 64]
        assert a.put_webhook("w", "{}", True) is not None
        assert [row[0] for row in b.webhooks()] == ["w"]
        assert b.add_first_user("first", "x") is True
        assert a.add_first_user("second", "x") is False
    finally:
        a.close()
        b.close()
