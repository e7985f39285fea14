"""[cluster] step 1: two mqhook processes routed through a real nats-server on 127.0.0.1."""

from __future__ import annotations

import time

import pytest

from .natsserver import NATS_SERVER, SKIP_REASON
from .pahoc import V5, V311
from .util import wait_until

pytestmark = pytest.mark.skipif(NATS_SERVER is None, reason=SKIP_REASON)


@pytest.fixture
def nodes(broker, nats_url):
    """Two mqhook nodes, A and B, on one nats-server."""
    cfg = 'node = "mqhook@{n}"\n[cluster]\nnats_url = "{url}"\n'
    return broker(config=cfg.format(n="a", url=nats_url)), broker(config=cfg.format(n="b", url=nats_url))


def await_interest(pub, sub, topic: str, timeout: float = 5.0) -> None:
    """Publish probes to ``topic`` from ``pub`` until ``sub`` gets one (its node's NATS subscription
    is set up just after its SUBACK); then forget them."""
    deadline = time.monotonic() + timeout
    n = 0
    while time.monotonic() < deadline:
        n += 1
        payload = f"probe-{n}".encode()
        pub.publish(topic, payload, qos=1)
        end = time.monotonic() + 0.1
        while time.monotonic() < end:
            if any(m.payload.startswith(b"probe-") for m in sub.received()):
                time.sleep(0.1)
                sub.clear()
                return
            time.sleep(0.01)
    raise AssertionError(f"no cross-node interest on {topic} within {timeout}s")


def test_qos0_and_qos1_across_nodes_once(nodes, clients, uid):
    a, b = nodes
    sub_b = clients(b, uid + "-sb")
    sub_b.subscribe(f"{uid}/#", qos=1)
    sub_a = clients(a, uid + "-sa", protocol=V311)
    sub_a.subscribe(f"{uid}/#", qos=1)
    pub = clients(a, uid + "-p")
    await_interest(pub, sub_b, f"{uid}/probe")
    sub_a.clear()
    pub.publish(f"{uid}/q0", b"zero", qos=0)
    pub.publish(f"{uid}/q1", b"one", qos=1, props={"UserProperty": [("k", "v")], "ContentType": "text/x"})
    got = sub_b.wait_messages(2)
    assert [(m.topic, m.payload, m.qos) for m in got] == [(f"{uid}/q0", b"zero", 0), (f"{uid}/q1", b"one", 1)]
    assert got[1].props.get("UserProperty") == [("k", "v")]
    assert got[1].props.get("ContentType") == "text/x"
    local = sub_a.wait_messages(2)
    sub_a.assert_no_message(0.5)
    sub_b.assert_no_message(0.1)
    assert sorted(m.payload for m in local) == [b"one", b"zero"]  # the local subscriber: once each


def test_hostile_topics_round_trip(nodes, clients, uid):
    a, b = nodes
    sub = clients(b, uid + "-s")
    sub.subscribe(f"{uid}/#", qos=1)
    pub = clients(a, uid + "-p")
    await_interest(pub, sub, f"{uid}/probe")
    topics = [f"{uid}/{t}" for t in ("a.b", "*", ">", "a b", "é/€", "", "x//y", "=2E", "=", "$x", "a.*.>")]
    for t in topics:
        pub.publish(t, t.encode(), qos=1)
    got = sub.wait_messages(len(topics))
    assert [m.topic for m in got] == topics
    assert all(m.payload == m.topic.encode() for m in got)


def test_wildcards_and_exact_filters_match_as_locally(nodes, clients, uid):
    a, b = nodes
    sub = clients(b, uid + "-s")
    sub.subscribe(f"{uid}/a/+/c", qos=1)
    sub.subscribe(f"{uid}/x.y", qos=1)
    sub.subscribe(f"{uid}/end", qos=1)
    pub = clients(a, uid + "-p")
    await_interest(pub, sub, f"{uid}/end")
    for t in ("a/b/c", "a/*/c", "a//c", "a/b/c/d", "a/c", "x/y", "x.y", "xay"):
        pub.publish(f"{uid}/{t}", b"x", qos=1)
    pub.publish(f"{uid}/end", b"", qos=1)
    sub.wait_topic(f"{uid}/end")
    got = [m.topic for m in sub.received() if m.topic != f"{uid}/end"]
    assert got == [f"{uid}/a/b/c", f"{uid}/a/*/c", f"{uid}/a//c", f"{uid}/x.y"]


def test_dollar_topics_not_matched_by_hash_on_the_other_node(nodes, clients, uid):
    a, b = nodes
    sub = clients(b, uid + "-s")
    sub.subscribe("#", qos=1)
    sub.subscribe("+/x", qos=1)
    dollar = clients(b, uid + "-d")
    dollar.subscribe("$SYS/#", qos=1)
    pub = clients(a, uid + "-p")
    await_interest(pub, sub, f"{uid}/probe")
    pub.publish("$SYS/x", b"sys", qos=1)
    pub.publish(f"{uid}/end", b"end", qos=1)
    assert dollar.wait_payload(b"sys").topic == "$SYS/x"
    sub.wait_payload(b"end")
    assert [m.topic for m in sub.received()] == [f"{uid}/end"]


def test_shared_subscription_once_across_nodes(nodes, clients, uid):
    a, b = nodes
    members = [clients(a, uid + "-ma"), clients(b, uid + "-mb")]
    for m in members:
        m.subscribe(f"$share/g/{uid}/t/#", qos=1)
    # same group name, another filter: a separate MQTT group, it gets every message too
    other = clients(b, uid + "-o")
    other.subscribe(f"$share/g/{uid}/t/+", qos=1)
    watcher = clients(b, uid + "-w")
    watcher.subscribe(f"{uid}/t/#", qos=1)
    pub = clients(a, uid + "-p")
    await_interest(pub, watcher, f"{uid}/t/probe")
    n = 40
    for i in range(n):
        pub.publish(f"{uid}/t/{i}", str(i).encode(), qos=1)
    pub.publish(f"{uid}/t/end", b"end", qos=1)  # after all of them, from the same publisher

    def numbered(c) -> list[bytes]:  # the n messages (not the probes, not the end marker)
        return [m.payload for m in c.received() if m.topic.rsplit("/", 1)[-1].isdigit()]

    watcher.wait_payload(b"end")
    other.wait_payload(b"end")  # one subscription, one publisher: everything before it is in
    assert wait_until(lambda: sum(len(numbered(m)) for m in members) >= n, timeout=5.0)
    assert wait_until(lambda: any(m.payload == b"end" for member in members for m in member.received()))
    got = [p for member in members for p in numbered(member)]
    assert sorted(got, key=int) == [str(i).encode() for i in range(n)]  # each exactly once
    assert all(numbered(member) for member in members), "both nodes' members take turns"
    assert numbered(other) == [str(i).encode() for i in range(n)]


def test_no_interest_before_subscription(nodes, clients, uid):
    a, b = nodes
    pub = clients(a, uid + "-p")
    early = clients(b, uid + "-e", protocol=V5)
    early.subscribe(f"{uid}/other", qos=1)
    pub.publish(f"{uid}/t", b"before", qos=1)
    pub.publish(f"{uid}/other", b"marker-1", qos=1)  # one publisher's messages stay in order through NATS:
    early.wait_payload(b"marker-1")  # once the marker is on B, "before" has been and gone
    sub = clients(b, uid + "-s")
    sub.subscribe(f"{uid}/t", qos=1)
    await_interest(pub, sub, f"{uid}/t")
    pub.publish(f"{uid}/t", b"after", qos=1)
    assert sub.wait_payload(b"after")
    assert [m.payload for m in sub.received()] == [b"after"]
    early.assert_no_message(0.1)
    sub.unsubscribe(f"{uid}/t")
    pub.publish(f"{uid}/t", b"gone", qos=1)
    pub.publish(f"{uid}/other", b"marker-2", qos=1)
    early.wait_payload(b"marker-2")
    assert [m.payload for m in sub.received()] == [b"after"]


def test_message_over_nats_max_payload_stays_local_and_the_bridge_goes_on(broker, nats_url, clients, uid):
    """A message bigger than the NATS server's max_payload (1 MB) cannot cross: it is delivered on its
    own node, counted ``too_large`` once, and the messages after it still cross."""
    cfg = 'node = "mqhook@{n}"\n[mqtt]\nmax_packet_size = 2000000\n[cluster]\nnats_url = "{url}"\n'
    a, b = broker(config=cfg.format(n="a", url=nats_url)), broker(config=cfg.format(n="b", url=nats_url))
    local = clients(a, uid + "-la")
    local.subscribe(f"{uid}/#", qos=1)
    remote = clients(b, uid + "-rb")
    remote.subscribe(f"{uid}/#", qos=1)
    pub = clients(a, uid + "-p")
    await_interest(pub, remote, f"{uid}/probe")
    local.clear()
    pub.publish(f"{uid}/big", b"x" * 1_100_000, qos=1)
    pub.publish(f"{uid}/small", b"after", qos=1)
    assert remote.wait_payload(b"after")
    assert local.wait_payload(b"after")
    assert [m.topic for m in remote.received()] == [f"{uid}/small"]
    assert [m.topic for m in local.received()] == [f"{uid}/big", f"{uid}/small"]
    assert a.stat("cluster", "counters", "bridge", "too_large") == 1
