"""Retained messages: store, replace, clear, QoS, wildcards, Retain Handling, Retain As Published."""

from __future__ import annotations

import pytest

from .pahoc import V5, V311
from .rawmqtt import PUBACK, publish_packet


@pytest.mark.parametrize("protocol", [V311, V5], ids=["v311", "v5"])
def test_retained_delivered_on_subscribe(default_broker, clients, uid, protocol):
    topic = f"{uid}/r"
    pub = clients(default_broker, uid + "-p", protocol=protocol)
    pub.publish(topic, b"kept", qos=1, retain=True)
    sub = clients(default_broker, uid + "-s", protocol=protocol)
    sub.subscribe(topic, qos=1)
    (m,) = sub.wait_messages(1)
    assert (m.topic, m.payload, m.retain, m.qos) == (topic, b"kept", True, 1)
    sub.assert_no_message(0.2)


def test_retained_counted_in_stats(broker, clients, uid):
    b = broker()
    pub = clients(b, uid + "-p")
    pub.publish(f"{uid}/a", b"1", qos=1, retain=True)
    pub.publish(f"{uid}/b", b"2", qos=1, retain=True)
    assert b.wait_stat(("retained",), lambda v: v == 2) == 2
    pub.publish(f"{uid}/a", b"", qos=1, retain=True)
    assert b.wait_stat(("retained",), lambda v: v == 1) == 1


def test_retained_replaced_by_newer(default_broker, clients, uid):
    topic = f"{uid}/r"
    pub = clients(default_broker, uid + "-p")
    pub.publish(topic, b"old", qos=1, retain=True)
    pub.publish(topic, b"new", qos=1, retain=True)
    sub = clients(default_broker, uid + "-s")
    sub.subscribe(topic, qos=1)
    (m,) = sub.wait_messages(1)
    assert m.payload == b"new"
    sub.assert_no_message(0.2)


def test_empty_payload_clears_retained(default_broker, clients, uid):
    pub = clients(default_broker, uid + "-p")
    pub.publish(f"{uid}/gone", b"x", qos=1, retain=True)
    pub.publish(f"{uid}/gone", b"", qos=1, retain=True)
    pub.publish(f"{uid}/kept", b"y", qos=1, retain=True)
    sub = clients(default_broker, uid + "-s")
    sub.subscribe(f"{uid}/#", qos=1)
    sub.wait_topic(f"{uid}/kept")
    sub.assert_no_message(0.3)
    assert [m.topic for m in sub.received()] == [f"{uid}/kept"]


def test_empty_retained_publish_still_forwarded_live(default_broker, clients, uid):
    topic = f"{uid}/clear"
    sub = clients(default_broker, uid + "-s")
    sub.subscribe(topic, qos=1)
    pub = clients(default_broker, uid + "-p")
    pub.publish(topic, b"", qos=1, retain=True)
    (m,) = sub.wait_messages(1)
    assert m.payload == b""


def test_non_retained_publish_does_not_touch_retained(default_broker, clients, uid):
    topic = f"{uid}/r"
    pub = clients(default_broker, uid + "-p")
    pub.publish(topic, b"retained", qos=1, retain=True)
    pub.publish(topic, b"live", qos=1, retain=False)
    sub = clients(default_broker, uid + "-s")
    sub.subscribe(topic, qos=1)
    (m,) = sub.wait_messages(1)
    assert m.payload == b"retained"


@pytest.mark.parametrize(("stored_qos", "sub_qos"), [(1, 0), (1, 2), (2, 1), (0, 2)])
def test_retained_qos_is_min(default_broker, clients, uid, stored_qos, sub_qos):
    topic = f"{uid}/r"
    pub = clients(default_broker, uid + "-p")
    pub.publish(topic, b"q", qos=stored_qos, retain=True)
    sub = clients(default_broker, uid + "-s")
    sub.subscribe(topic, qos=sub_qos)
    (m,) = sub.wait_messages(1)
    assert m.qos == min(stored_qos, sub_qos)
    assert m.retain is True


def test_retained_with_wildcards(default_broker, clients, uid):
    pub = clients(default_broker, uid + "-p")
    topics = [f"{uid}/a/1", f"{uid}/b/1", f"{uid}/a/2", f"{uid}/a/1/deep"]
    for t in topics:
        pub.publish(t, t.encode(), qos=1, retain=True)
    plus = clients(default_broker, uid + "-plus")
    plus.subscribe(f"{uid}/+/1", qos=1)
    hash_ = clients(default_broker, uid + "-hash")
    hash_.subscribe(f"{uid}/a/#", qos=1)
    plus.wait_messages(2)
    hash_.wait_messages(3)
    plus.assert_no_message(0.2)
    hash_.assert_no_message(0.1)
    assert sorted(m.topic for m in plus.received()) == [f"{uid}/a/1", f"{uid}/b/1"]
    assert sorted(m.topic for m in hash_.received()) == sorted([f"{uid}/a/1", f"{uid}/a/2", f"{uid}/a/1/deep"])
    assert all(m.retain for m in plus.received() + hash_.received())


@pytest.mark.parametrize("protocol", [V311, V5], ids=["v311", "v5"])
def test_live_forward_of_retained_publish_has_retain_0(default_broker, clients, uid, protocol):
    """3.1.1 [MQTT-3.3.1-9]; v5 with Retain As Published = 0."""
    topic = f"{uid}/live"
    sub = clients(default_broker, uid + "-s", protocol=protocol)
    sub.subscribe(topic, qos=1)
    pub = clients(default_broker, uid + "-p", protocol=protocol)
    pub.publish(topic, b"r", qos=1, retain=True)
    (m,) = sub.wait_messages(1)
    assert m.retain is False


def test_retain_as_published(default_broker, clients, uid):
    topic = f"{uid}/rap"
    rap = clients(default_broker, uid + "-rap")
    rap.subscribe(topic, qos=1, rap=True)
    norap = clients(default_broker, uid + "-norap")
    norap.subscribe(topic, qos=1, rap=False)
    pub = clients(default_broker, uid + "-p")
    pub.publish(topic, b"retained", qos=1, retain=True)
    pub.publish(topic, b"plain", qos=1, retain=False)
    a = rap.wait_messages(2)
    b = norap.wait_messages(2)
    assert [(m.payload, m.retain) for m in a] == [(b"retained", True), (b"plain", False)]
    assert [(m.payload, m.retain) for m in b] == [(b"retained", False), (b"plain", False)]
    # a message sent because of a new subscription always has retain = 1, RAP or not
    late = clients(default_broker, uid + "-late")
    late.subscribe(topic, qos=1, rap=False)
    (m,) = late.wait_messages(1)
    assert (m.payload, m.retain) == (b"retained", True)


def test_retain_handling_0_always(default_broker, clients, uid):
    topic = f"{uid}/rh0"
    clients(default_broker, uid + "-p").publish(topic, b"r", qos=1, retain=True)
    sub = clients(default_broker, uid + "-s")
    sub.subscribe(topic, qos=1, rh=0)
    sub.wait_messages(1)
    sub.subscribe(topic, qos=1, rh=0)  # re-subscribe: sent again
    msgs = sub.wait_messages(2)
    assert [(m.payload, m.retain) for m in msgs] == [(b"r", True), (b"r", True)]


def test_retain_handling_1_only_new_subscription(default_broker, clients, uid):
    topic = f"{uid}/rh1"
    pub = clients(default_broker, uid + "-p")
    pub.publish(topic, b"r", qos=1, retain=True)
    sub = clients(default_broker, uid + "-s")
    sub.subscribe(topic, qos=1, rh=1)
    sub.wait_messages(1)
    sub.subscribe(topic, qos=1, rh=1)  # the subscription exists: nothing
    sub.subscribe(f"{uid}/barrier", qos=1)
    pub.publish(f"{uid}/barrier", b"b", qos=1)
    sub.wait_topic(f"{uid}/barrier")
    sub.assert_no_message(0.2)
    assert [m.payload for m in sub.received()] == [b"r", b"b"]


def test_retain_handling_2_never(default_broker, clients, uid):
    topic = f"{uid}/rh2"
    pub = clients(default_broker, uid + "-p")
    pub.publish(topic, b"r", qos=1, retain=True)
    sub = clients(default_broker, uid + "-s")
    sub.subscribe(topic, qos=1, rh=2)
    pub.publish(topic, b"live", qos=1)
    sub.wait_payload(b"live")
    sub.assert_no_message(0.2)
    assert [m.payload for m in sub.received()] == [b"live"]


def test_retained_not_matched_by_other_prefix(default_broker, clients, uid):
    pub = clients(default_broker, uid + "-p")
    pub.publish(f"{uid}x/a", b"no", qos=1, retain=True)
    pub.publish(f"{uid}/a", b"yes", qos=1, retain=True)
    sub = clients(default_broker, uid + "-s")
    sub.subscribe(f"{uid}/#", qos=1)
    sub.wait_messages(1)
    sub.assert_no_message(0.3)
    assert [m.payload for m in sub.received()] == [b"yes"]


def test_many_retained_qos1_messages_all_reach_a_paho_subscriber(broker, raw, clients, uid):
    """Issue 10, defect 4: retained delivery on subscribe flows through the window as the client
    acknowledges, not through the bounded queue (before: max_queued_messages + max_inflight arrived)."""
    b = broker("[mqtt]\nmax_queued_messages = 50\n")
    n = 2000
    pub = raw(b, version=4)
    assert pub.connect(uid + "-p").rc == 0
    pub.send(
        b"".join(
            publish_packet(f"{uid}/ret/{i}", b"%d" % i, qos=1, pid=i + 1, retain=True, version=4) for i in range(n)
        )
    )
    for _ in range(n):
        pub.expect(PUBACK)
    assert b.stat("retained") == n
    sub = clients(b, uid + "-s")
    assert sub.subscribe(f"{uid}/ret/#", qos=1) == [1]
    sub.wait_messages(n, timeout=30)
    got = sub.received()
    assert {m.payload for m in got} == {b"%d" % i for i in range(n)} and all(m.qos == 1 and m.retain for m in got)
    assert b.stat("deliveries_dropped", "qos0_msg") == 0 and b.stat("deliveries_dropped", "queue_full") == 0
