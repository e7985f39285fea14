"""Optional server capabilities from the config: announced in the v5 CONNACK and enforced."""

from __future__ import annotations

import pytest

from .rawmqtt import (
    CONNACK,
    DISCONNECT,
    P_MAXIMUM_QOS,
    P_RETAIN_AVAILABLE,
    P_SHARED_SUB_AVAILABLE,
    P_SUB_ID_AVAILABLE,
    P_WILDCARD_SUB_AVAILABLE,
    SUBACK,
    Will,
    connect_packet,
    parse_connack,
    parse_disconnect,
    parse_suback,
    publish_packet,
    subscribe_packet,
)


def expect_disconnect(c, reason: int) -> None:
    got = c.wait_closed(3)
    assert got, f"expected DISCONNECT {reason:#x} before the close"
    assert got[-1].type == DISCONNECT, got
    assert parse_disconnect(got[-1])[0] == reason, got


def assert_connect_refused(c, reason: int) -> None:
    """The connection is refused and closed; the CONNACK with ``reason`` is a SHOULD."""
    got = c.wait_closed(3)
    assert all(p.type == CONNACK for p in got), got
    if got:
        assert parse_connack(got[0]).rc == reason, got


def assert_subscription_refused(c, filters: list[tuple[str, int]], expected: list[int], reason: int) -> None:
    """Either a SUBACK with ``expected`` codes, or (the v5 spec allows it) DISCONNECT ``reason``."""
    c.send(subscribe_packet(2, filters))
    pkt = c.recv()
    if pkt.type == SUBACK:
        assert parse_suback(pkt)[1] == expected
    else:
        assert pkt.type == DISCONNECT, pkt
        assert parse_disconnect(pkt)[0] == reason
        c.wait_closed(3)


def test_default_capabilities_announced(default_broker, raw, uid):
    ack = raw(default_broker).connect(uid)
    # absent means "available" / QoS 2 [MQTT-3.2.2.3]
    assert ack.props.get(P_RETAIN_AVAILABLE, 1) == 1
    assert ack.props.get(P_MAXIMUM_QOS, 2) == 2
    assert ack.props.get(P_WILDCARD_SUB_AVAILABLE, 1) == 1
    assert ack.props.get(P_SHARED_SUB_AVAILABLE, 1) == 1
    assert ack.props.get(P_SUB_ID_AVAILABLE, 1) == 1


def test_retain_unavailable(broker, raw, clients, uid):
    b = broker("[mqtt]\nretain_available = false\n")
    c = raw(b)
    ack = c.connect(uid)
    assert ack.props.get(P_RETAIN_AVAILABLE) == 0
    c.publish(f"{uid}/plain", b"ok", qos=1)  # a non-retained publish is fine
    c.send(publish_packet(f"{uid}/r", b"x", qos=0, retain=True))
    expect_disconnect(c, 0x9A)  # Retain not supported


def test_retain_unavailable_will_retain_refused(broker, raw, uid):
    b = broker("[mqtt]\nretain_available = false\n")
    c = raw(b)
    c.send(connect_packet(uid, version=5, will=Will(f"{uid}/w", b"x", retain=True)))
    assert_connect_refused(c, 0x9A)  # [MQTT-3.2.2-13]


@pytest.mark.parametrize("max_qos", [0, 1])
def test_max_qos(broker, raw, clients, uid, max_qos):
    b = broker(f"[mqtt]\nmax_qos = {max_qos}\n")
    c = raw(b)
    ack = c.connect(uid)
    assert ack.props.get(P_MAXIMUM_QOS) == max_qos
    # subscriptions are granted at most max_qos
    assert c.subscribe([(f"{uid}/a", 2), (f"{uid}/b", 1), (f"{uid}/c", 0)], pid=3) == [max_qos, min(1, max_qos), 0]
    # a publish above max_qos is a protocol violation: 0x9B QoS not supported
    c.send(publish_packet(f"{uid}/x", b"x", qos=max_qos + 1, pid=4))
    expect_disconnect(c, 0x9B)


def test_max_qos_v311_subscription_downgraded(broker, raw, uid):
    b = broker("[mqtt]\nmax_qos = 1\n")
    c = raw(b, version=4)
    assert c.connect(uid).rc == 0
    assert c.subscribe(f"{uid}/a", qos=2) == [1]


def test_max_qos_will_qos_refused(broker, raw, uid):
    b = broker("[mqtt]\nmax_qos = 1\n")
    c = raw(b)
    c.send(connect_packet(uid, version=5, will=Will(f"{uid}/w", b"x", qos=2)))
    assert_connect_refused(c, 0x9B)  # [MQTT-3.2.2-12]


def test_shared_subscriptions_unavailable(broker, raw, uid):
    b = broker("[mqtt]\nshared_subscription_available = false\n")
    c = raw(b)
    ack = c.connect(uid)
    assert ack.props.get(P_SHARED_SUB_AVAILABLE) == 0
    assert_subscription_refused(c, [(f"$share/g/{uid}/t", 1), (f"{uid}/t", 1)], [0x9E, 1], 0x9E)


def test_wildcard_subscriptions_unavailable(broker, raw, uid):
    b = broker("[mqtt]\nwildcard_subscription_available = false\n")
    c = raw(b)
    ack = c.connect(uid)
    assert ack.props.get(P_WILDCARD_SUB_AVAILABLE) == 0
    assert_subscription_refused(c, [(f"{uid}/+", 1), (f"{uid}/#", 1), (f"{uid}/t", 1)], [0xA2, 0xA2, 1], 0xA2)
