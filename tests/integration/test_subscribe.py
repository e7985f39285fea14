"""Topic filters, $-topics, shared subscriptions, No Local, subscription identifiers, (UN)SUBACK codes."""

from __future__ import annotations

from collections import Counter

import pytest

from .pahoc import V5, V311
from .rawmqtt import DISCONNECT, SUBACK, Closed, parse_disconnect, parse_suback, subscribe_packet
from .util import wait_until


def collect_until(sub, end_topic, timeout=5.0):
    sub.wait_topic(end_topic, timeout)
    return [m.topic for m in sub.received() if m.topic != end_topic]


def test_plus_wildcard(default_broker, clients, uid):
    sub = clients(default_broker, uid + "-s")
    sub.subscribe(f"{uid}/+/c", qos=1)
    sub.subscribe(f"{uid}/end", qos=1)
    pub = clients(default_broker, uid + "-p")
    for t in ("a/c", "b/c", "a/b/c", "c", "a/c/d", "/c", "a/cc"):
        pub.publish(f"{uid}/{t}", b"x", qos=1)
    pub.publish(f"{uid}/end", b"", qos=1)
    assert collect_until(sub, f"{uid}/end") == [f"{uid}/a/c", f"{uid}/b/c", f"{uid}//c"]


def test_hash_wildcard_matches_parent_and_children(default_broker, clients, uid):
    sub = clients(default_broker, uid + "-s")
    sub.subscribe(f"{uid}/a/#", qos=1)
    sub.subscribe(f"{uid}/end", qos=1)
    pub = clients(default_broker, uid + "-p")
    for t in ("a", "a/b", "a/b/c", "ab", "b/a", "a/"):
        pub.publish(f"{uid}/{t}", b"x", qos=1)
    pub.publish(f"{uid}/end", b"", qos=1)
    assert collect_until(sub, f"{uid}/end") == [f"{uid}/a", f"{uid}/a/b", f"{uid}/a/b/c", f"{uid}/a/"]


def test_plus_and_hash_combined(default_broker, clients, uid):
    sub = clients(default_broker, uid + "-s")
    sub.subscribe(f"{uid}/+/x/#", qos=0)
    sub.subscribe(f"{uid}/end", qos=0)
    pub = clients(default_broker, uid + "-p")
    for t in ("a/x", "a/x/1/2", "a/y/x", "x"):
        pub.publish(f"{uid}/{t}", b"x", qos=1)
    pub.publish(f"{uid}/end", b"", qos=1)
    assert collect_until(sub, f"{uid}/end") == [f"{uid}/a/x", f"{uid}/a/x/1/2"]


def test_dollar_topics_not_matched_by_leading_wildcards(broker, clients, uid):
    b = broker()
    hash_all = clients(b, uid + "-hash")
    hash_all.subscribe("#", qos=1)
    plus = clients(b, uid + "-plus")
    plus.subscribe("+/x", qos=1)
    dollar = clients(b, uid + "-dollar")
    dollar.subscribe("$foo/#", qos=1)
    pub = clients(b, uid + "-p")
    pub.publish("$foo/x", b"dollar", qos=1)
    pub.publish("bar/x", b"plain", qos=1)  # barrier: matched by '#' and '+/x' only
    hash_all.wait_payload(b"plain")
    plus.wait_payload(b"plain")
    (m,) = dollar.wait_messages(1)
    assert (m.topic, m.payload) == ("$foo/x", b"dollar")
    dollar.assert_no_message(0.2)
    assert [m.payload for m in hash_all.received()] == [b"plain"]
    assert [m.payload for m in plus.received()] == [b"plain"]


def test_shared_subscription_round_robin(default_broker, clients, uid):
    members = [clients(default_broker, f"{uid}-m{i}") for i in range(2)]
    for m in members:
        assert m.subscribe(f"$share/g/{uid}/#", qos=1) == [1]
    pub = clients(default_broker, uid + "-p")
    for i in range(10):
        pub.publish(f"{uid}/t", f"{i}".encode(), qos=1)
    assert wait_until(lambda: sum(len(m.received()) for m in members) >= 10), "10 messages in the group"
    for m in members:
        m.assert_no_message(0.2)
    got = [[msg.payload for msg in m.received()] for m in members]
    assert sorted(got[0] + got[1]) == sorted(f"{i}".encode() for i in range(10))
    assert sorted(len(g) for g in got) == [5, 5], got
    assert all(msg.topic == f"{uid}/t" for m in members for msg in m.received())


def test_shared_group_and_plain_subscriber(default_broker, clients, uid):
    members = [clients(default_broker, f"{uid}-m{i}", protocol=V311) for i in range(2)]
    for m in members:
        m.subscribe(f"$share/grp/{uid}/t", qos=1)
    plain = clients(default_broker, uid + "-plain")
    plain.subscribe(f"{uid}/t", qos=1)
    other_group = clients(default_broker, uid + "-other")
    other_group.subscribe(f"$share/other/{uid}/t", qos=1)
    pub = clients(default_broker, uid + "-p")
    for i in range(10):
        pub.publish(f"{uid}/t", f"{i}".encode(), qos=1)
    plain.wait_messages(10)
    other_group.wait_messages(10)
    assert wait_until(lambda: sum(len(m.received()) for m in members) >= 10), "group total 10"
    plain.assert_no_message(0.2)
    assert [m.payload for m in plain.received()] == [f"{i}".encode() for i in range(10)]
    assert len(other_group.received()) == 10
    assert len(members[0].received()) + len(members[1].received()) == 10
    assert all(len(m.received()) > 0 for m in members)


def test_shared_member_leaving_gets_no_more(default_broker, clients, uid):
    a = clients(default_broker, uid + "-a")
    b = clients(default_broker, uid + "-b")
    for c in (a, b):
        c.subscribe(f"$share/g/{uid}/t", qos=1)
    assert b.unsubscribe(f"$share/g/{uid}/t") == [0]
    pub = clients(default_broker, uid + "-p")
    for i in range(4):
        pub.publish(f"{uid}/t", f"{i}".encode(), qos=1)
    a.wait_messages(4)
    b.assert_no_message(0.2)


def test_no_local(default_broker, clients, uid):
    me = clients(default_broker, uid + "-me")
    me.subscribe(f"{uid}/t", qos=1, no_local=True)
    me.subscribe(f"{uid}/end", qos=1)
    other = clients(default_broker, uid + "-other")
    other.subscribe(f"{uid}/t", qos=1)
    before = default_broker.stat("deliveries_dropped", "no_local")
    me.publish(f"{uid}/t", b"mine", qos=1)
    other.wait_payload(b"mine")
    me.publish(f"{uid}/end", b"end", qos=1)
    me.wait_payload(b"end")
    assert [m.payload for m in me.received()] == [b"end"]
    # a message from someone else is delivered
    other.publish(f"{uid}/t", b"theirs", qos=1)
    me.wait_payload(b"theirs")
    assert default_broker.stat("deliveries_dropped", "no_local") >= before + 1


def test_without_no_local_own_messages_echo(default_broker, clients, uid):
    me = clients(default_broker, uid + "-me")
    me.subscribe(f"{uid}/t", qos=1)
    me.publish(f"{uid}/t", b"echo", qos=1)
    me.wait_payload(b"echo")


def test_subscription_identifiers(default_broker, clients, uid):
    sub = clients(default_broker, uid + "-s")
    sub.subscribe(f"{uid}/a/#", qos=1, sub_id=7)
    sub.subscribe(f"{uid}/+/b", qos=1, sub_id=300)
    sub.subscribe(f"{uid}/plain", qos=1)
    pub = clients(default_broker, uid + "-p")
    pub.publish(f"{uid}/a/x", b"one", qos=1)
    m = sub.wait_payload(b"one")
    assert m.props.get("SubscriptionIdentifier") == [7]
    pub.publish(f"{uid}/plain", b"none", qos=1)
    m = sub.wait_payload(b"none")
    assert "SubscriptionIdentifier" not in m.props
    pub.publish(f"{uid}/a/b", b"both", qos=1)  # matches both subscriptions: one copy with both ids, or two

    def ids() -> list[int]:
        both = [m for m in sub.messages if m.payload == b"both"]
        return sorted(i for m in both for i in m.props.get("SubscriptionIdentifier", []))

    sub.wait_for(lambda: len(ids()) >= 2, what="both subscription identifiers")
    assert ids() == [7, 300]


def test_per_subscription_max_qos(default_broker, clients, uid):
    sub = clients(default_broker, uid + "-s")
    assert sub.subscribe(f"{uid}/t", qos=1) == [1]
    clients(default_broker, uid + "-p").publish(f"{uid}/t", b"q2", qos=2)
    (m,) = sub.wait_messages(1)
    assert m.qos == 1


def test_resubscribe_replaces_subscription(default_broker, clients, uid):
    sub = clients(default_broker, uid + "-s")
    sub.subscribe(f"{uid}/t", qos=0)
    sub.subscribe(f"{uid}/t", qos=2)
    clients(default_broker, uid + "-p").publish(f"{uid}/t", b"x", qos=2)
    (m,) = sub.wait_messages(1)
    assert m.qos == 2
    sub.assert_no_message(0.3)


@pytest.mark.parametrize("protocol", [V311, V5], ids=["v311", "v5"])
def test_unsubscribe_stops_delivery(default_broker, clients, uid, protocol):
    sub = clients(default_broker, uid + "-s", protocol=protocol)
    sub.subscribe(f"{uid}/t", qos=1)
    sub.subscribe(f"{uid}/end", qos=1)
    pub = clients(default_broker, uid + "-p")
    pub.publish(f"{uid}/t", b"before", qos=1)
    sub.wait_payload(b"before")
    codes = sub.unsubscribe(f"{uid}/t")
    if protocol == V5:
        assert codes == [0]
    pub.publish(f"{uid}/t", b"after", qos=1)
    pub.publish(f"{uid}/end", b"end", qos=1)
    sub.wait_payload(b"end")
    assert [m.payload for m in sub.received()] == [b"before", b"end"]


def test_unsuback_v5_reason_codes(default_broker, clients, uid):
    sub = clients(default_broker, uid + "-s")
    sub.subscribe(f"{uid}/exists", qos=0)
    assert sub.unsubscribe([f"{uid}/exists", f"{uid}/never"]) == [0x00, 0x11]
    assert sub.unsubscribe(f"{uid}/exists") == [0x11]


def test_suback_v5_invalid_filter_mixed_with_valid(default_broker, raw, clients, uid):
    sub = raw(default_broker)  # raw: paho refuses to send invalid filters
    assert sub.connect(uid + "-s").rc == 0
    filters = [(f"{uid}/ok", 1), (f"{uid}/#/b", 1), (f"{uid}/a+", 0), (f"{uid}/ok2", 2), ("#/x", 0)]
    assert sub.subscribe(filters, pid=9) == [1, 0x8F, 0x8F, 2, 0x8F]
    sub.ping()  # still connected
    pub = clients(default_broker, uid + "-p")
    pub.publish(f"{uid}/ok", b"1", qos=0)
    assert sub.recv_publish().payload == b"1"
    pub.publish(f"{uid}/ok2", b"2", qos=0)
    assert sub.recv_publish().payload == b"2"


def test_suback_granted_codes_in_order(default_broker, clients, uid):
    for protocol in (V311, V5):
        sub = clients(default_broker, f"{uid}-{protocol}", protocol=protocol)
        assert sub.subscribe([(f"{uid}/a", 2), (f"{uid}/b", 0), (f"{uid}/c", 1)]) == [2, 0, 1]


def test_subscriptions_counted(broker, clients, uid):
    b = broker()
    sub = clients(b, uid + "-s")
    sub.subscribe([(f"{uid}/a", 0), (f"{uid}/b/#", 1)])
    assert b.wait_stat(("subscriptions",), lambda v: v == 2) == 2
    sub.unsubscribe(f"{uid}/a")
    assert b.wait_stat(("subscriptions",), lambda v: v == 1) == 1


def test_overlapping_subscriptions_v5_one_message_per_subscription_or_merged(default_broker, clients, uid):
    sub = clients(default_broker, uid + "-s")
    sub.subscribe([(f"{uid}/#", 0), (f"{uid}/t", 2)])
    clients(default_broker, uid + "-p").publish(f"{uid}/t", b"x", qos=2)
    sub.wait_messages(1)
    with sub.cond:  # a second copy is allowed; give it a moment to show up
        sub.cond.wait_for(lambda: len(sub.messages) >= 2, 0.5)
    got = sub.received()
    assert 1 <= len(got) <= 2
    # whichever way the server resolves the overlap, the QoS 2 subscription is honoured
    assert max(m.qos for m in got) == 2
    assert Counter(m.payload for m in got) == Counter({b"x": len(got)})


@pytest.mark.parametrize("bad", ["$share/g", "$share//t", "$share/g+/t", "$share/g#/t", "a/b#", "+a", "", "#/#"])
def test_suback_v5_0x8f_for_malformed_filters(default_broker, raw, uid, bad):
    c = raw(default_broker)
    assert c.connect(uid).rc == 0
    c.send(subscribe_packet(5, [(bad, 1), (f"{uid}/ok", 1)]))
    pkt = c.recv()
    if pkt.type == SUBACK:
        assert parse_suback(pkt)[1] == [0x8F, 1], bad
        c.ping()
    else:  # a malformed filter may also be treated as a malformed packet
        assert pkt.type == DISCONNECT, pkt
        assert parse_disconnect(pkt)[0] in (0x81, 0x82, 0x8F), pkt


def test_v311_invalid_filter_refused(default_broker, raw, uid):
    c = raw(default_broker, version=4)
    assert c.connect(uid).rc == 0
    c.send(subscribe_packet(5, [(f"{uid}/#/b", 1), (f"{uid}/ok", 1)], version=4))
    try:
        pkt = c.recv()
    except Closed:
        return  # closing the connection is allowed
    assert pkt.type == SUBACK
    assert parse_suback(pkt, 4)[1] == [0x80, 1]
