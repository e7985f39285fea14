"""[cluster] retained messages cluster-wide: the JetStream KV bucket ``mqhook_retained`` on a real
nats-server, each mqhook node a real process keeping its local replica (its retained trie)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .natsserver import NATS_SERVER, SKIP_REASON, start_single
from .pahoc import Msg
from .util import wait_until

pytestmark = pytest.mark.skipif(NATS_SERVER is None, reason=SKIP_REASON)

CFG = 'node = "mqhook@{name}"\n{top}[cluster]\nnats_url = "{url}"\n'


@pytest.fixture
def nats_url(tmp_path: Path) -> Iterator[str]:
    """A nats-server of the test's own: the bucket starts empty, so retained counts are exact."""
    server = start_single(tmp_path / "nats")
    try:
        yield server.url
    finally:
        server.terminate()


@pytest.fixture
def node(broker, nats_url):
    """``node(name, mqtt="...", **broker_kw)``: an mqhook node on the test's nats-server; ``mqtt`` is
    the body of an ``[mqtt]`` table."""

    def start(name: str, mqtt: str = "", **kw: Any):
        top = f"[mqtt]\n{mqtt}\n" if mqtt else ""
        return broker(config=CFG.format(name=name, top=top, url=nats_url), **kw)

    return start


def retained_count(b) -> int:
    return b.stat("retained")


def wait_retained(b, n: int, timeout: float = 10.0) -> None:
    assert wait_until(lambda: retained_count(b) == n, timeout=timeout), (
        f"{b}: {retained_count(b)} retained messages, expected {n}"
    )


def received(clients, b, cid: str, topic_filter: str) -> list[Msg]:
    """The retained messages a new subscription of ``topic_filter`` on ``b`` receives: those sent
    before a marker the client publishes to itself once subscribed (delivered in order)."""
    c = clients(b, cid)
    c.subscribe(topic_filter, qos=1)
    barrier = f"barrier/{cid}"
    c.subscribe(barrier, qos=1)
    c.publish(barrier, b"barrier", qos=1)
    c.wait_payload(b"barrier")
    got = [m for m in c.received() if m.topic != barrier]
    c.close()
    assert all(m.retain for m in got)
    return got


def retained_now(clients, b, cid: str, topic_filter: str) -> dict[str, Msg]:
    return {m.topic: m for m in received(clients, b, cid, topic_filter)}


def snapshot(clients, b, cid: str, topic_filter: str, n: int) -> dict[str, Msg]:
    """``retained_now``, which must be ``n`` messages (no topic twice)."""
    got = received(clients, b, cid, topic_filter)
    assert len(got) == n, f"expected {n} retained messages, got {[(m.topic, m.payload[:40]) for m in got]}"
    return {m.topic: m for m in got}


def payloads(msgs: dict[str, Msg]) -> dict[str, bytes]:
    return {t: m.payload for t, m in msgs.items()}


def test_retained_set_on_a_is_read_on_b(node, clients, uid):
    a, b = node("a"), node("b")
    pub = clients(a, uid + "-p")
    pub.publish(f"{uid}/x", b"x", qos=1, retain=True)
    pub.publish(f"{uid}/x/y", b"xy", qos=1, retain=True, props={"UserProperty": [("k", "v")], "ContentType": "t/x"})
    pub.publish(f"{uid}/z/y", b"zy", qos=0, retain=True)
    pub.publish(f"$app/{uid}/s", b"dollar", qos=1, retain=True)
    wait_retained(b, 4)
    exact = snapshot(clients, b, uid + "-s1", f"{uid}/x/y", 1)
    m = exact[f"{uid}/x/y"]
    assert (m.payload, m.qos) == (b"xy", 1)
    assert m.props.get("UserProperty") == [("k", "v")] and m.props.get("ContentType") == "t/x"
    assert payloads(snapshot(clients, b, uid + "-s2", f"{uid}/+/y", 2)) == {f"{uid}/x/y": b"xy", f"{uid}/z/y": b"zy"}
    assert payloads(snapshot(clients, b, uid + "-s3", f"{uid}/#", 3)) == {
        f"{uid}/x": b"x",
        f"{uid}/x/y": b"xy",
        f"{uid}/z/y": b"zy",
    }
    # A $ topic: only for a filter that names its first level [MQTT-4.7.2-1].
    assert set(snapshot(clients, b, uid + "-s4", "#", 3)) == {f"{uid}/x", f"{uid}/x/y", f"{uid}/z/y"}
    assert set(snapshot(clients, b, uid + "-s5", "+/+/s", 0)) == set()
    assert payloads(snapshot(clients, b, uid + "-s6", "$app/#", 1)) == {f"$app/{uid}/s": b"dollar"}
    assert payloads(snapshot(clients, b, uid + "-s7", "$app/+/s", 1)) == {f"$app/{uid}/s": b"dollar"}


def test_cleared_on_b_is_gone_on_a(node, clients, uid):
    a, b = node("a"), node("b")
    pub_a = clients(a, uid + "-pa")
    pub_a.publish(f"{uid}/keep", b"k", qos=1, retain=True)
    pub_a.publish(f"{uid}/clear", b"c", qos=1, retain=True)
    wait_retained(b, 2)
    clients(b, uid + "-pb").publish(f"{uid}/clear", b"", qos=1, retain=True)
    wait_retained(a, 1)
    assert payloads(snapshot(clients, a, uid + "-s", f"{uid}/#", 1)) == {f"{uid}/keep": b"k"}
    assert payloads(snapshot(clients, b, uid + "-s2", f"{uid}/#", 1)) == {f"{uid}/keep": b"k"}


def test_a_node_started_later_has_them_at_once(node, clients, uid):
    a = node("a")
    pub = clients(a, uid + "-p")
    topics = {f"{uid}/n/{i}": f"v{i}".encode() for i in range(50)}
    for t, p in topics.items():
        pub.publish(t, p, qos=1, retain=True)
    pub.publish(f"{uid}/n/7", b"", qos=1, retain=True)  # cleared: C must not have it
    del topics[f"{uid}/n/7"]
    b = node("b")  # a witness: once B has them all, the KV does
    wait_retained(b, 49)
    c = node("c")
    assert retained_count(c) == 49  # no waiting: loaded before C accepted its first client
    assert payloads(snapshot(clients, c, uid + "-s", f"{uid}/n/+", 49)) == topics


def test_hostile_topic_names_round_trip(node, clients, uid):
    a, b = node("a"), node("b")
    levels = ["a.b", "*", ">", "=", "=2E", "a b", "é/€", "", "x//y", "tab\tx", "a.*.>", "end/"]
    topics = [f"{uid}/{lv}" for lv in levels] + [f"$x.y/{uid}/*"]
    pub = clients(a, uid + "-p")
    for i, t in enumerate(topics):
        pub.publish(t, f"p{i}".encode(), qos=1, retain=True)
    wait_retained(b, len(topics))
    plain = {t: f"p{i}".encode() for i, t in enumerate(topics) if not t.startswith("$")}
    assert payloads(snapshot(clients, b, uid + "-s", f"{uid}/#", len(plain))) == plain
    assert payloads(snapshot(clients, b, uid + "-s2", "$x.y/#", 1)) == {f"$x.y/{uid}/*": f"p{len(topics) - 1}".encode()}


def test_concurrent_sets_converge(node, clients, uid):
    """A and B set one topic at once, over and over (three rounds, a topic each): every node ends
    with the KV's last write of each (a node started afterwards loads exactly the KV)."""
    a, b = node("a"), node("b")
    topics = [f"{uid}/race/{r}" for r in range(3)]
    pub_a, pub_b = clients(a, uid + "-pa"), clients(b, uid + "-pb")

    def burst(pub, topic: str, tag: str) -> None:
        for i in range(200):
            pub.publish(topic, f"{tag}{i}".encode(), qos=1, retain=True, wait=i % 20 == 19)

    for topic in topics:
        threads = [threading.Thread(target=burst, args=(p, topic, t)) for p, t in ((pub_a, "a"), (pub_b, "b"))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def values() -> list[dict[str, bytes]]:
        return [payloads(retained_now(clients, n, f"{uid}-v{i}", f"{uid}/race/+")) for i, n in enumerate((a, b))]

    agreed = wait_until(lambda: (v := values())[0] == v[1], timeout=10.0)
    assert agreed, f"A and B disagree: {values()}"
    final = values()[0]
    assert set(final) == set(topics) and set(final.values()) <= {b"a199", b"b199"}, final  # a burst's last
    c = node("c")  # loads the KV: its values are the KV's last writes
    assert payloads(snapshot(clients, c, uid + "-vc", f"{uid}/race/+", 3)) == final


def test_a_node_never_serves_an_older_value_of_its_own(node, clients, uid):
    """The KV echoes a node's own writes back in order; while a newer local change is on its way an
    older echo must not replace it, or a new subscriber would get the older value."""
    a, _b = node("a"), node("b")
    topic = f"{uid}/mine"
    pub = clients(a, uid + "-p")
    for i in range(300):
        pub.publish(topic, f"v{i}".encode(), qos=1, retain=True, wait=False)
        if i % 30 == 29:
            pub.publish(topic, f"w{i}".encode(), qos=1, retain=True)  # acknowledged: A has retained it
            for j in range(3):
                got = snapshot(clients, a, f"{uid}-s{i}-{j}", topic, 1)[topic].payload
                assert got == f"w{i}".encode(), f"after w{i} was acknowledged A served {got!r}"


def test_message_expiry_across_nodes(node, clients, uid):
    a, b = node("a"), node("b")
    pub = clients(a, uid + "-p")
    pub.publish(f"{uid}/short", b"s", qos=1, retain=True, props={"MessageExpiryInterval": 2})
    pub.publish(f"{uid}/long", b"l", qos=1, retain=True, props={"MessageExpiryInterval": 3600})
    wait_retained(b, 2)
    got = snapshot(clients, b, uid + "-s1", f"{uid}/#", 2)
    assert got[f"{uid}/short"].props.get("MessageExpiryInterval") in (1, 2)
    assert 3590 <= got[f"{uid}/long"].props.get("MessageExpiryInterval", 0) <= 3600
    # Once expired, neither node delivers it, and a node started later does not load it.
    assert wait_until(lambda: set(retained_now(clients, b, f"{uid}-poll", f"{uid}/#")) == {f"{uid}/long"}, timeout=6.0)
    assert set(snapshot(clients, a, uid + "-s2", f"{uid}/#", 1)) == {f"{uid}/long"}
    c = node("c")
    assert retained_count(c) == 1
    assert set(snapshot(clients, c, uid + "-s3", f"{uid}/#", 1)) == {f"{uid}/long"}


def test_local_limits_still_count(node, clients, uid):
    a = node("a", mqtt="max_retained_messages = 2")
    b = node("b", mqtt="max_retained_messages = 3")
    pub_a = clients(a, uid + "-pa")
    for i in range(3):
        pub_a.publish(f"{uid}/a{i}", b"a", qos=1, retain=True)
    # A kept two; the third, not retained on A, is not retained anywhere.
    assert a.stat("limits", "max_retained_messages") == 1
    wait_retained(b, 2)
    pub_b = clients(b, uid + "-pb")
    for i in range(2):
        pub_b.publish(f"{uid}/b{i}", b"b", qos=1, retain=True)
    assert b.stat("limits", "max_retained_messages") == 1  # B holds three: b1 refused
    # A is full: what B retained is refused there too, and counted.
    wait_until(lambda: a.stat("limits", "max_retained_messages") == 2)
    assert a.stat("limits", "max_retained_messages") == 2
    assert set(snapshot(clients, a, uid + "-s", f"{uid}/#", 2)) == {f"{uid}/a0", f"{uid}/a1"}
    assert set(snapshot(clients, b, uid + "-s2", f"{uid}/#", 3)) == {f"{uid}/a0", f"{uid}/a1", f"{uid}/b0"}


def test_too_long_for_a_key_or_too_large_for_nats_stays_local(node, clients, uid):
    """A topic whose key NATS cannot take, or a message over the server's max_payload (1 MB), is
    retained on its node only, until the topic changes elsewhere."""
    a, b = node("a", mqtt="max_packet_size = 2000000"), node("b")
    long_topic = f"{uid}/" + "é" * 1300  # 2.6 KB of UTF-8, 7.8 KB escaped
    big = b"x" * 1_100_000
    pub = clients(a, uid + "-p")
    pub.publish(long_topic, b"long", qos=1, retain=True)
    pub.publish(f"{uid}/big", big, qos=1, retain=True)
    pub.publish(f"{uid}/short", b"short", qos=1, retain=True)
    wait_retained(b, 1)
    assert a.stat("cluster", "counters", "retained", "too_long") == 1
    assert a.stat("cluster", "counters", "retained", "too_large") == 1
    assert set(snapshot(clients, b, uid + "-s", f"{uid}/#", 1)) == {f"{uid}/short"}
    on_a = payloads(snapshot(clients, a, uid + "-s2", f"{uid}/#", 3))
    assert on_a == {f"{uid}/short": b"short", long_topic: b"long", f"{uid}/big": big}
    clients(b, uid + "-pb").publish(f"{uid}/big", b"small", qos=1, retain=True)  # A waits for nothing of its own
    assert wait_until(
        lambda: payloads(retained_now(clients, a, f"{uid}-poll", f"{uid}/big")) == {f"{uid}/big": b"small"}
    )


def test_durable_restart_takes_the_cluster_value(node, clients, uid, tmp_path):
    """durable_sessions + cluster: the KV is the truth. A node restarted on its data_dir gets what
    changed while it was down, and what it had on disk does not come back."""
    data = tmp_path / "a-data"
    a = node("a", mqtt="durable_sessions = true", data_dir=data)
    b = node("b")
    pub = clients(a, uid + "-pa")
    pub.publish(f"{uid}/changed", b"old", qos=1, retain=True)
    pub.publish(f"{uid}/cleared", b"old", qos=1, retain=True)
    pub.publish(f"{uid}/same", b"same", qos=1, retain=True)
    wait_retained(b, 3)
    pub.close()
    assert a.stop() == 0
    pub_b = clients(b, uid + "-pb")
    pub_b.publish(f"{uid}/changed", b"new", qos=1, retain=True)
    pub_b.publish(f"{uid}/cleared", b"", qos=1, retain=True)
    pub_b.publish(f"{uid}/added", b"added", qos=1, retain=True)
    wait_retained(b, 3)
    a2 = node("a", mqtt="durable_sessions = true", data_dir=data)
    assert retained_count(a2) == 3
    assert payloads(snapshot(clients, a2, uid + "-s", f"{uid}/#", 3)) == {
        f"{uid}/changed": b"new",
        f"{uid}/same": b"same",
        f"{uid}/added": b"added",
    }


def test_nats_restart_set_while_down_reaches_the_others(broker, clients, uid, tmp_path):
    """A retained message set while nats-server is down is written once it is back (the write is
    retried), and each node's KV consumer comes back after the restart."""
    server = start_single(tmp_path / "nats")
    try:
        cfg = CFG.format(top="", url=server.url, name="{}")
        a, b = broker(config=cfg.format("a")), broker(config=cfg.format("b"))
        pub_a = clients(a, uid + "-pa")
        pub_a.publish(f"{uid}/before", b"1", qos=1, retain=True)
        wait_retained(b, 1)
        server.kill()
        pub_a.publish(f"{uid}/down", b"2", qos=1, retain=True)  # retained on A at once
        pub_a.subscribe(f"{uid}/down", qos=1)  # (no new client is let in while NATS is away)
        assert pub_a.wait_topic(f"{uid}/down").payload == b"2"
        # The write times out (no reply within nats-py's 5 s) and is queued again.
        assert a.wait_stat(("cluster", "counters", "retained", "retries"), lambda n: n > 0, timeout=15.0) > 0
        server.start()
        wait_retained(b, 2, timeout=20.0)
        clients(b, uid + "-pb").publish(f"{uid}/after", b"3", qos=1, retain=True)
        wait_retained(a, 3, timeout=20.0)
        want = {f"{uid}/before": b"1", f"{uid}/down": b"2", f"{uid}/after": b"3"}
        assert payloads(snapshot(clients, a, uid + "-sa2", f"{uid}/#", 3)) == want
        assert payloads(snapshot(clients, b, uid + "-sb", f"{uid}/#", 3)) == want
    finally:
        server.terminate()
