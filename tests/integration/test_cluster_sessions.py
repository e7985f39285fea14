"""[cluster] session ownership: takeover between mqhook processes on a real nats-server (JetStream),
fencing of a frozen node, the wills of a dead node, and refusal when NATS is gone."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator

import pytest

from .natsserver import NATS_SERVER, SKIP_REASON, start_single
from .rawmqtt import (
    P_SESSION_EXPIRY,
    P_WILL_DELAY,
    PUBACK,
    Closed,
    RawClient,
    Will,
    ack_packet,
    parse_disconnect,
)
from .util import wait_until

pytestmark = pytest.mark.skipif(NATS_SERVER is None, reason=SKIP_REASON)

CFG = 'node = "mqhook@{n}"\n[cluster]\nnats_url = "{url}"\nnode_timeout = "{timeout}"\n'


@pytest.fixture
def raw() -> Iterator:
    """``raw(broker, version=5)``: a RawClient, closed at teardown."""
    made: list[RawClient] = []

    def make(broker, version: int = 5) -> RawClient:
        client = RawClient.to(broker, version=version)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


def node(broker, url: str, name: str, timeout: str = "3s"):
    return broker(config=CFG.format(n=name, url=url, timeout=timeout))


@pytest.fixture
def nodes(broker, nats_url):
    return node(broker, nats_url, "a"), node(broker, nats_url, "b")


def persistent(expiry: int = 300) -> dict:
    return {"clean": False, "properties": [(P_SESSION_EXPIRY, expiry)]}


def expect_taken_over(client: RawClient, timeout: float = 5.0) -> None:
    """The old connection gets DISCONNECT 0x8E (session taken over), then is closed."""
    got = client.wait_closed(timeout)
    assert got, "closed without a DISCONNECT"
    rc, _ = parse_disconnect(got[-1])
    assert rc == 0x8E, got


def await_delivery(pub: RawClient, sub: RawClient, topic: str, timeout: float = 5.0) -> None:
    """Publish QoS 0 probes on ``topic`` until ``sub`` gets one (cross-node interest is in place)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pub.publish(topic, b"probe")
        try:
            p = sub.recv_publish(0.2)
        except TimeoutError:
            continue
        assert p.payload == b"probe", p
        while True:  # forget the other probes
            try:
                sub.recv_publish(0.2)
            except TimeoutError:
                return
    raise AssertionError(f"no cross-node delivery on {topic} within {timeout}s")


def test_takeover_from_a_to_b_within_a_second(nodes, uid, raw):
    a, b = nodes
    old = raw(a)
    assert old.connect(uid).rc == 0
    new = raw(b)
    started = time.monotonic()
    ack = new.connect(uid, clean=False)  # clean start would be reported "discarded"
    took = time.monotonic() - started
    assert ack.rc == 0 and not ack.session_present
    assert took < 1.0, f"takeover took {took:.2f}s"
    expect_taken_over(old)
    new.ping()
    assert a.wait_stat(("disconnects", "takenover"), lambda n: n >= 1) == 1
    assert a.stat("cluster", "counters", "sessions", "takeovers_served") >= 1
    # And back to A: B lets go in turn.
    back = raw(a)
    assert back.connect(uid).rc == 0
    expect_taken_over(new)
    back.ping()


def test_local_reconnect_still_takes_over(nodes, uid, raw):
    a, _ = nodes
    first = raw(a)
    assert first.connect(uid, **persistent()).rc == 0
    second = raw(a)
    ack = second.connect(uid, **persistent())
    assert ack.rc == 0 and ack.session_present
    expect_taken_over(first)
    assert a.stat("cluster", "counters", "sessions", "takeovers_requested") == 0


def test_persistent_session_moves_with_its_subscriptions_and_queue(nodes, uid, raw):
    a, b = nodes
    will_watch = raw(a)
    assert will_watch.connect(uid + "-w").rc == 0
    will_watch.subscribe(f"{uid}/will", qos=0)
    sub = raw(a)
    will = Will(f"{uid}/will", b"gone", props=[(P_WILL_DELAY, 60)])
    assert sub.connect(uid, will=will, **persistent()).rc == 0
    sub.subscribe(f"{uid}/t/#", qos=1)
    sub.disconnect()  # normal: the will is dropped, the session stays on A
    pub_a = raw(a)
    assert pub_a.connect(uid + "-pa").rc == 0
    for i in range(3):
        pub_a.publish(f"{uid}/t/q", f"queued-{i}".encode(), qos=1, pid=i + 1)
    # Reconnect on B (a new will, then taken over again below): the session, with its queue, moves.
    sub = raw(b)
    ack = sub.connect(uid, will=will, **persistent())
    assert ack.rc == 0 and ack.session_present
    got = [sub.recv_publish() for _ in range(3)]
    assert [p.payload for p in got] == [b"queued-0", b"queued-1", b"queued-2"]
    for p in got:
        sub.send(ack_packet(PUBACK, p.pid))
    # Its subscription lives on B now: messages published on either node reach it.
    await_delivery(pub_a, sub, f"{uid}/t/probe")
    pub_a.publish(f"{uid}/t/a", b"from-a", qos=1, pid=10)
    pub_b = raw(b)
    assert pub_b.connect(uid + "-pb").rc == 0
    pub_b.publish(f"{uid}/t/b", b"from-b", qos=1, pid=11)
    got = [sub.recv_publish() for _ in range(2)]
    assert sorted(p.payload for p in got) == [b"from-a", b"from-b"]
    for p in got:
        sub.send(ack_packet(PUBACK, p.pid))
    # Back to A without clean start: B's connection is taken over, and its delayed will is cancelled.
    again = raw(a)
    ack = again.connect(uid, **persistent())
    assert ack.rc == 0 and ack.session_present
    expect_taken_over(sub)
    assert b.stat("cluster", "counters", "sessions", "sessions_transferred") >= 1
    assert a.stat("cluster", "counters", "sessions", "sessions_transferred") >= 1
    pub_b.publish(f"{uid}/t/c", b"after", qos=1, pid=12)
    assert again.recv_publish().payload == b"after"
    will_watch.assert_silent(0.5)


def test_clean_start_on_b_discards_and_fires_the_pending_will(nodes, uid, raw):
    a, b = nodes
    watch = raw(b)
    assert watch.connect(uid + "-w").rc == 0
    watch.subscribe(f"{uid}/will", qos=0)
    probe = raw(a)
    assert probe.connect(uid + "-p").rc == 0
    await_delivery(probe, watch, f"{uid}/will")
    old = raw(a)
    will = Will(f"{uid}/will", b"last words", props=[(P_WILL_DELAY, 100)])
    assert old.connect(uid, will=will, **persistent()).rc == 0
    old.subscribe(f"{uid}/old/#", qos=1)
    old.abort()  # the will is pending: 100 s delay
    watch.assert_silent(0.5)
    new = raw(b)
    ack = new.connect(uid, clean=True)
    assert ack.rc == 0 and not ack.session_present
    assert watch.recv_publish(5.0).payload == b"last words"
    new.ping()
    assert a.stat("disconnects", "discarded") == 0  # the old connection was gone already


def test_wills_of_a_killed_node_are_published_by_a_survivor(broker, nats_url, uid, raw):
    a = node(broker, nats_url, "a", timeout="2s")
    b = node(broker, nats_url, "b", timeout="2s")
    watch = raw(b)
    assert watch.connect(uid + "-w").rc == 0
    watch.subscribe(f"{uid}/will", qos=1)
    victim = raw(a)
    will = Will(f"{uid}/will", b"node died", qos=1)
    assert victim.connect(uid, will=will).rc == 0
    victim.ping()
    # The will goes on record with a write right after CONNACK: wait for A to have made it.
    assert a.wait_stat(("cluster", "counters", "sessions", "will_writes"), lambda n: n >= 1) >= 1
    a.proc.kill()
    a.proc.wait(5)
    started = time.monotonic()
    p = watch.recv_publish(2.0 + 1.0 + 4.0)  # node_timeout + a heartbeat + margin
    assert (p.topic, p.payload) == (f"{uid}/will", b"node died")
    assert time.monotonic() - started >= 1.0  # not at once: only once A's heartbeats stopped
    assert b.stat("cluster", "counters", "sessions", "wills_of_dead_nodes") == 1
    assert b.stat("cluster", "counters", "sessions", "dead_nodes") >= 1
    watch.send(ack_packet(PUBACK, p.pid))
    watch.assert_silent(1.0)  # once
    # The client id is free: a CONNECT on B does not wait for A.
    again = raw(b)
    ack = again.connect(uid)
    assert ack.rc == 0 and not ack.session_present


def test_frozen_node_drops_its_client_after_takeover(nodes, uid, raw):
    a, b = nodes
    old = raw(a)
    assert old.connect(uid, **persistent()).rc == 0
    old.ping()
    a.send_signal(signal.SIGSTOP)
    try:
        new = raw(b)
        started = time.monotonic()
        ack = new.connect(uid, **persistent())
        assert ack.rc == 0 and not ack.session_present  # A did not answer: taken without its state
        assert time.monotonic() - started < 2.0
        assert b.stat("cluster", "counters", "sessions", "takeover_no_answer") >= 1
    finally:
        a.send_signal(signal.SIGCONT)
    expect_taken_over(old)  # A saw the new owner on waking: only one owner
    new.ping()
    # On waking, A either finds the new owner in its watcher (fenced) or first serves B's request,
    # which waited for it (its revision is still A's): either way the client is dropped once.
    counters = a.stats()["cluster"]["counters"]["sessions"]
    assert counters["fenced"] + counters["takeovers_served"] == 1, counters


def test_connect_refused_when_nats_is_gone(broker, tmp_path, uid, raw):
    server = start_single(tmp_path / "nats-gone")
    try:
        a = node(broker, server.url, "a")
        ok = raw(a)
        assert ok.connect(uid + "-ok").rc == 0
        server.kill()
        codes: list[int] = []

        def refused() -> bool:
            c = raw(a)
            try:
                codes.append(c.connect(uid).rc)
            except Closed:
                return False
            finally:
                c.close()
            return codes[-1] == 0x88

        assert wait_until(refused, timeout=10.0, interval=0.2), codes
        assert a.stat("cluster", "counters", "sessions", "refused_unavailable") >= 1
        ok.ping()  # the connected client stays
        v3 = raw(a, version=4)
        assert v3.connect(uid + "-3").rc == 3
    finally:
        server.terminate()


def test_restarted_node_does_not_repeat_a_will_survivors_published(broker, nats_url, uid, raw, tmp_path):
    cfg = CFG.format(n="a", url=nats_url, timeout="2s") + "[mqtt]\ndurable_sessions = true\n"
    data = tmp_path / "data-a"
    a = broker(config=cfg, data_dir=data)
    b = node(broker, nats_url, "b", timeout="2s")
    watch = raw(b)
    assert watch.connect(uid + "-w").rc == 0
    watch.subscribe(f"{uid}/will", qos=0)
    victim = raw(a)
    will = Will(f"{uid}/will", b"once", props=[(P_WILL_DELAY, 60)])
    assert victim.connect(uid, will=will, **persistent()).rc == 0
    assert a.wait_stat(("cluster", "counters", "sessions", "will_writes"), lambda n: n >= 1) >= 1
    flushed = a.stat("durable_sessions", "flushes")
    victim.abort()  # the will is delayed 60 s: it waits in A's session, on disk and on record
    assert a.wait_stat(("durable_sessions", "flushes"), lambda n: n > flushed) > flushed
    a.proc.kill()
    a.proc.wait(5)
    assert watch.recv_publish(2.0 + 1.0 + 4.0).payload == b"once"  # B published it: A is dead
    a2 = broker(config=cfg, data_dir=data)  # the same node, its session and delayed will restored
    assert a2.wait_stat(("cluster", "counters", "sessions", "orphans_dropped"), lambda n: n >= 1, timeout=8) == 1
    assert a2.stat("durable_sessions", "restored_sessions") >= 1
    watch.assert_silent(1.0)
