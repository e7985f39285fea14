"""Faults under [cluster] (issue 14): ``kill -9`` one nats-server of three while messages flow,
SIGSTOP/SIGCONT a nats-server for 10 s, ``kill -9`` a worker of ``mqhook run --workers 2`` under load.

Real processes throughout; every load loop is bounded in count and in time, every wait is for a
condition (the 10 s freeze is the fault itself)."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from conftest import Broker

from .natsserver import NATS_SERVER, SKIP_REASON, NatsServer, start_cluster, wait_cluster
from .pahoc import V5, V311, Client, Clients
from .rawmqtt import RawClient
from .test_cluster import await_interest
from .test_cluster_sessions import expect_taken_over, persistent
from .test_workers import _on_w1, _pids, _round_trips
from .util import wait_until

pytestmark = pytest.mark.skipif(NATS_SERVER is None, reason=SKIP_REASON)

NODE_CFG = 'node = "mqhook@{name}"\n[cluster]\nnats_url = "{url}"\nreplicas = 3\n{extra}'
FREEZE = 10.0  # seconds a nats-server stays stopped


class Flow(threading.Thread):
    """Publishes ``topic/<k>`` (payload ``k``) for k = 0, 1, ... with QoS alternating ``qos`` values,
    each waited for (written, or acknowledged), until ``stop``, ``count`` messages or ``seconds``;
    a publish that fails or times out (the connection is gone) ends it with ``error`` set."""

    def __init__(self, client: Client, topic: str, qos: tuple[int, ...] = (1,), count: int = 20000, seconds=30.0):
        super().__init__(name=f"flow-{client.client_id}", daemon=True)
        self.client, self.topic, self.qos, self.count, self.seconds = client, topic, qos, count, seconds
        self.stop = threading.Event()
        self.sent = 0  # published and (QoS 1) acknowledged
        self.error: str | None = None

    def run(self) -> None:
        end = time.monotonic() + self.seconds
        for k in range(self.count):
            if self.stop.is_set() or time.monotonic() > end:
                return
            try:
                self.client.publish(f"{self.topic}/{k}", str(k).encode(), qos=self.qos[k % len(self.qos)], timeout=5.0)
            except AssertionError as exc:
                self.error = str(exc)
                return
            self.sent = k + 1

    def finish(self) -> None:
        self.stop.set()
        self.join(10.0)
        assert not self.is_alive(), f"{self.name} is stuck"


def _connect(clients: Clients, node: Broker, client_id: str, timeout: float) -> Client:
    """A client of ``node``, connecting again while the node refuses with "server unavailable"
    (0x88; 3 in 3.1.1), bounded by ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        c = clients(node, client_id, protocol=V5, expect_rc=None)
        if c.connack_rc == 0:
            return c
        c.close()
        assert c.connack_rc == 0x88 and time.monotonic() < deadline, f"{client_id}: CONNACK {c.connack_rc}"
        time.sleep(0.1)


def _seqs(sub: Client, prefix: str) -> list[int]:
    return [int(m.payload) for m in sub.received() if m.topic.startswith(prefix + "/") and m.payload.isdigit()]


@pytest.fixture
def cluster3(request, tmp_path, broker) -> Iterator[tuple[list[NatsServer], list[Broker]]]:
    """Three nats-servers (a cluster) and mqhook nodes a, b, c, each on its own server; the faults
    change them, so each test gets new ones. (The nodes come from the ``broker`` factory, so a
    failure report has their stderr.) ``@pytest.mark.parametrize("cluster3", [TOML], indirect=True)``
    adds TOML lines to each node's [cluster]."""
    extra = getattr(request, "param", "")
    servers = start_cluster(tmp_path / "nats", 3)
    nodes: list[Broker] = []
    try:
        for name, server in zip("abc", servers, strict=True):
            nodes.append(broker(config=NODE_CFG.format(name=name, url=server.url, extra=extra)))
        yield servers, nodes
    finally:
        for node in nodes:
            node.stop()
        for server in servers:
            server.terminate()


def test_kill_9_one_nats_server_of_three(cluster3, clients: Clients, uid):
    """a -> b keeps routing, without a gap, while c's nats-server is killed; c's connections move to a
    surviving server (nats-py learnt the others from the server's INFO) and c routes again.

    The server killed is the worst one: the leader of the bucket of node heartbeats (else of
    JetStream's meta group), so JetStream elects new leaders while the messages flow; a and b,
    whose servers live, must keep their clients."""
    servers, nodes = cluster3
    leader = servers[0].stream_leader("KV_mqhook_nodes") or servers[0].meta_leader()
    k = next((i for i, s in enumerate(servers) if s.name == leader), 2)
    a, b = (nodes[i] for i in range(3) if i != k)
    c = nodes[k]
    sub_b = clients(b, f"{uid}-sb")
    sub_b.subscribe(f"{uid}/flow/#", qos=1)
    pub_a = clients(a, f"{uid}-pa", protocol=V311)
    await_interest(pub_a, sub_b, f"{uid}/flow/probe")
    flow = Flow(pub_a, f"{uid}/flow", qos=(0, 1))
    flow.start()
    try:
        assert wait_until(lambda: len(_seqs(sub_b, f"{uid}/flow")) >= 200, timeout=10.0)
        servers[k].kill()  # kill -9 c's server
        t_kill = time.monotonic()
        at_kill = flow.sent
        # The rest keep routing: a's messages published after the kill reach b.
        assert wait_until(lambda: max(_seqs(sub_b, f"{uid}/flow"), default=-1) >= at_kill + 300, timeout=15.0), (
            at_kill,
            flow.sent,
            flow.error,
        )
    finally:
        flow.finish()
    assert flow.error is None, flow.error
    sub_b.wait_for(lambda: len(_seqs(sub_b, f"{uid}/flow")) >= flow.sent, timeout=10.0, what="the whole flow")
    # Both servers of a and b survived: not one message lost or doubled on the way.
    assert sorted(_seqs(sub_b, f"{uid}/flow")) == list(range(flow.sent))

    # c: its NATS connections reconnect to a's or b's server (nats-py tries the discovered servers,
    # reconnect_time_wait 2 s) and it routes both ways again. New clients: c was cut off for longer
    # than node_timeout, so the others may have taken its sessions (session takeover's business),
    # and c refuses CONNECT (0x88) while JetStream is out of its reach.
    sub_c = _connect(clients, c, f"{uid}-sc", timeout=30.0)
    sub_c.subscribe(f"{uid}/toc/#", qos=1)
    await_interest(pub_a, sub_c, f"{uid}/toc/probe", timeout=30.0)
    print(f"c routes again {time.monotonic() - t_kill:.2f}s after its nats-server was killed")
    pub_c = _connect(clients, c, f"{uid}-pc", timeout=10.0)
    await_interest(pub_c, sub_b, f"{uid}/flow/probe-c", timeout=10.0)
    for n in range(20):
        pub_a.publish(f"{uid}/toc/{n}", str(n).encode(), qos=1)
        pub_c.publish(f"{uid}/flow/c/{n}", str(n).encode(), qos=1)
    assert [int(m.payload) for m in sub_c.wait_messages(20)] == list(range(20))
    sub_b.wait_for(lambda: len(_seqs(sub_b, f"{uid}/flow/c")) >= 20, what="c's messages")
    assert _seqs(sub_b, f"{uid}/flow/c") == list(range(20))
    assert c.alive() and a.alive() and b.alive()


# node_timeout above the freeze: this is about routing and interest. (With the default 3 s, a and b
# rightly declare c dead during the freeze and take its sessions: c's clients are then dropped by
# design; that is session takeover's fault check, not this one.)
@pytest.mark.parametrize("cluster3", ['node_timeout = "30s"\n'], indirect=True)
def test_sigstop_a_nats_server_for_10s_then_sigcont(cluster3, clients: Clients, uid):
    """c's nats-server frozen for 10 s: a and b keep routing; subscriptions made during the freeze
    (on c, and on a and b) work once it runs again, and messages flow in every direction."""
    servers, (a, b, c) = cluster3
    pubs = [clients(node, f"{uid}-p{n}") for n, node in enumerate((a, b, c))]
    subs = [clients(node, f"{uid}-s{n}", protocol=V311) for n, node in enumerate((a, b, c))]
    subs[1].subscribe(f"{uid}/before/#", qos=1)
    await_interest(pubs[0], subs[1], f"{uid}/before/probe")
    frozen = servers[2]
    frozen.stop()  # SIGSTOP
    t_stop = time.monotonic()
    try:
        # During the freeze: new subscriptions on every node (c's SUBSCRIBE is answered by c;
        # its NATS SUB waits in the socket), and a -> b still routes.
        for n, s in enumerate(subs):
            assert s.subscribe(f"{uid}/during/{n}/#", qos=1) == [1]
        await_interest(pubs[0], subs[1], f"{uid}/during/1/probe", timeout=5.0)
        for k in range(20):
            pubs[0].publish(f"{uid}/before/{k}", str(k).encode(), qos=1)
        subs[1].wait_for(lambda: len(_seqs(subs[1], f"{uid}/before")) >= 20, what="a -> b during the freeze")
        assert time.monotonic() - t_stop < FREEZE, "the checks during the freeze took longer than the freeze"
        time.sleep(max(0.0, FREEZE - (time.monotonic() - t_stop)))  # the fault: stopped for FREEZE seconds
    finally:
        frozen.cont()  # SIGCONT
    t_cont = time.monotonic()
    wait_cluster(servers, timeout=30.0)
    # Interest re-converges: every pair, both ways, on the subscriptions made during the freeze.
    for i in range(3):
        for j in range(3):
            if i != j:
                await_interest(pubs[i], subs[j], f"{uid}/during/{j}/from{i}/probe", timeout=20.0)
    print(f"interest re-converged {time.monotonic() - t_cont:.2f}s after SIGCONT")
    for i in range(3):
        for j in range(3):
            if i != j:
                for k in range(10):
                    pubs[i].publish(f"{uid}/during/{j}/from{i}/{k}", str(k).encode(), qos=k % 2)
    for j in range(3):
        for i in range(3):
            if i != j:
                prefix = f"{uid}/during/{j}/from{i}"
                subs[j].wait_for(lambda j=j, p=prefix: len(_seqs(subs[j], p)) >= 10, what=f"10 on {prefix}")
                assert _seqs(subs[j], prefix) == list(range(10))


def _placed(b: Broker, clients: Clients, uid: str, tag: str, each: int) -> tuple[list[Client], list[Client]]:
    """``each`` clients on worker 1 and ``each`` on worker 2 (SO_REUSEPORT decides; extra ones closed)."""
    w1: list[Client] = []
    w2: list[Client] = []
    for i in range(80):
        c = clients(b, f"{uid}-{tag}{i}", protocol=V311)
        side = w1 if _on_w1(b, c.client_id) else w2
        if len(side) < each:
            side.append(c)
        else:
            c.close()
        if len(w1) == each and len(w2) == each:
            return w1, w2
    raise AssertionError(f"80 connections did not give {each} on each worker ({len(w1)}, {len(w2)})")


def test_workers_kill_9_a_worker_under_load(broker, clients: Clients, uid):
    """``--workers 2``, QoS 0/1 publishers and subscribers on both workers: kill -9 worker 2. Its
    clients are cut off and connect again (to worker 1 or the restarted worker 2) and round trips
    work; worker 1's publishers and subscribers never stop; the supervisor restarts worker 2 and
    messages cross between the workers again; nothing is stuck."""
    b = broker(extra_args=["--workers", "2"])
    (sub1,), (sub2,) = _placed(b, clients, uid, "s", 1)
    for s in (sub1, sub2):
        s.subscribe(f"{uid}/load/#", qos=1)
    pubs1, pubs2 = _placed(b, clients, uid, "p", 2)
    for p in pubs1 + pubs2:  # every publisher's messages reach both workers' subscribers
        await_interest(p, sub1, f"{uid}/load/probe/{p.client_id}", timeout=10.0)
        await_interest(p, sub2, f"{uid}/load/probe/{p.client_id}", timeout=10.0)
    flows = {p.client_id: Flow(p, f"{uid}/load/{p.client_id}", qos=(0, 1), seconds=25.0) for p in pubs1 + pubs2}
    for f in flows.values():
        f.start()
    try:

        def from_w1(sub: Client) -> int:
            return sum(len(_seqs(sub, f"{uid}/load/{p.client_id}")) for p in pubs1)

        assert wait_until(lambda: from_w1(sub1) >= 200 and from_w1(sub2) >= 100, timeout=10.0)
        w2 = _pids(b)["w2#0"]
        os.kill(w2, signal.SIGKILL)
        at_kill = from_w1(sub1)
        acked_at_kill = {p.client_id: flows[p.client_id].sent for p in pubs1}
        # Worker 2's clients are cut off; their flows end with an error, not a hang.
        for c in (sub2, *pubs2):
            assert c.disconnected.wait(10), f"{c.client_id} still connected to a dead worker"
        for p in pubs2:
            flows[p.client_id].join(10.0)
            assert not flows[p.client_id].is_alive(), "a publisher of the dead worker hangs"
        # Worker 1 goes on: its publishers are acknowledged, its subscriber receives.
        assert wait_until(lambda: from_w1(sub1) >= at_kill + 500, timeout=10.0), (at_kill, from_w1(sub1))
        assert all(flows[p.client_id].sent > acked_at_kill[p.client_id] + 100 for p in pubs1)
        # The cut-off clients connect again (same client ids) and a round trip works for each.
        for c in (sub2, *pubs2):
            again = clients(b, c.client_id, protocol=V311)
            again.subscribe(f"{uid}/back/{c.client_id}", qos=1)
            again.round_trip(f"{uid}/back/{c.client_id}")
    finally:
        for f in flows.values():
            f.finish()
    assert all(flows[p.client_id].error is None for p in pubs1), [flows[p.client_id].error for p in pubs1]
    # The supervisor restarted worker 2; messages cross between the workers again.
    assert wait_until(lambda: "w2 restarted" in b.stderr_text(), timeout=10.0), b.stderr_text()[-3000:]
    assert wait_until(lambda: b.stderr_text().count("worker w2 ready") >= 2, timeout=20.0)
    _round_trips(b, clients, uid, "after")
    assert b.alive()
    assert b.stop() == 0, b.stderr_text()[-3000:]


def _raw_connect(node: Broker, client_id: str, made: list[RawClient], timeout: float, **kw) -> tuple[RawClient, Any]:
    """A raw v5 client of ``node``, connecting again while the node answers 0x88 (its JetStream is
    out of reach, or electing), bounded by ``timeout``; returns the client and its CONNACK."""
    deadline = time.monotonic() + timeout
    while True:
        client = RawClient.to(node, version=5)
        made.append(client)
        ack = client.connect(client_id, **kw)
        if ack.rc != 0x88 or time.monotonic() > deadline:
            return client, ack
        client.close()
        time.sleep(0.1)


def test_sigstop_a_nats_server_for_10s_leaves_one_owner_per_client(cluster3, uid):
    """c's nats-server frozen for 10 s with the default node_timeout: a client of c connects again
    on a (c cannot answer: a takes the id without its state). After SIGCONT c drops its copy of
    that client: one owner. c's other client stays on c, unless a or b declared c dead during the
    freeze (then its record was reaped and c drops it too); either way, its id then taken on b
    lives on b only. c serves again once JetStream is within its reach."""
    servers, (a, b, c) = cluster3
    made: list[RawClient] = []
    try:
        moved, ack = _raw_connect(c, uid + "-moved", made, 5.0, **persistent())
        assert ack.rc == 0
        stayed, ack = _raw_connect(c, uid + "-stayed", made, 5.0)
        assert ack.rc == 0
        servers[2].stop()  # SIGSTOP c's nats-server
        t_stop = time.monotonic()
        try:
            new, ack = _raw_connect(a, uid + "-moved", made, 8.0, **persistent())
            assert ack.rc == 0 and not ack.session_present, ack
            assert a.stat("cluster", "counters", "sessions", "takeover_no_answer") >= 1
            time.sleep(max(0.0, FREEZE - (time.monotonic() - t_stop)))  # the fault: stopped for FREEZE seconds
        finally:
            servers[2].cont()
        expect_taken_over(moved, timeout=30.0)  # c saw the newer owner (or served the late request): one owner
        new.ping()  # the moved client lives on a
        # c's other client: kept by c (back before anyone declared it dead), or dropped with 0x8E (a or
        # b declared c dead and reaped its record). Either way, taking its id on b now leaves b the
        # only owner: c lets go of it if it still had it.
        again, ack = _raw_connect(b, uid + "-stayed", made, 30.0)
        assert ack.rc == 0, ack
        expect_taken_over(stayed, timeout=30.0)
        again.ping()
        counters = c.stats()["cluster"]["counters"]["sessions"]
        # c let go through its watcher (fenced) or by serving a's requests that waited in the frozen
        # server (each CONNECT attempt on a asked once; the first one closes the connection)
        assert counters["fenced"] + counters["takeovers_served"] >= 1, counters
        _back, ack = _raw_connect(c, uid + "-after", made, 30.0)  # c serves again
        assert ack.rc == 0, ack
    finally:
        for client in made:
            client.close()
