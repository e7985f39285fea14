"""Each reason of client.disconnected, message.dropped, delivery.dropped and client.connack, provoked
for real and observed in the webhook body (EMQX names, /work/shared/reference/emqx-webhook.md §1.4)."""

from __future__ import annotations

import pytest

from .rawmqtt import (
    CONNACK,
    P_SESSION_EXPIRY,
    PUBCOMP,
    PUBREC,
    PUBREL,
    ack_packet,
    connect_packet,
    parse_ack,
    parse_connack,
    publish_packet,
)
from .receiver import Receivers, addr, start_broker

DISCONNECT_EVENTS = ["client.connected", "client.disconnected"]
EXPIRY = [(P_SESSION_EXPIRY, 300)]


@pytest.fixture
def rx():
    yield from Receivers.fixture()


def persistent(raw, b, client_id, version=5, clean=False):
    """A raw client with a persistent session (3.1.1 clean session 0; v5 clean start 0 + expiry 300)."""
    c = raw(b, version=version)
    kw = {"properties": EXPIRY} if version == 5 else {}
    assert c.connect(client_id, clean=clean, **kw).rc == 0
    return c


# ---------------------------------------------------------------------------- client.disconnected
@pytest.mark.parametrize("version", [4, 5])
def test_disconnected_normal(rx, broker, raw, uid, version):
    r = rx()
    b = start_broker(broker, r, events=DISCONNECT_EVENTS)
    c = raw(b, version=version)
    assert c.connect(uid).rc == 0
    me = addr(c.sock.getsockname())
    c.disconnect()
    c.wait_closed()
    ev = r.wait_event("client.disconnected", clientid=uid)
    assert (ev["reason"], ev["peername"]) == ("normal", me)


@pytest.mark.parametrize("version", [4, 5])
def test_disconnected_takenover(rx, broker, raw, uid, version):
    r = rx()
    b = start_broker(broker, r, events=DISCONNECT_EVENTS)
    first = persistent(raw, b, uid, version)
    first_addr = addr(first.sock.getsockname())
    persistent(raw, b, uid, version, clean=False)
    first.wait_closed()
    ev = r.wait_event("client.disconnected", clientid=uid, peername=first_addr)
    assert ev["reason"] == "takenover"


@pytest.mark.parametrize("version", [4, 5])
def test_disconnected_discarded(rx, broker, raw, uid, version):
    r = rx()
    b = start_broker(broker, r, events=DISCONNECT_EVENTS)
    first = persistent(raw, b, uid, version)
    first_addr = addr(first.sock.getsockname())
    second = raw(b, version=version)
    assert second.connect(uid, clean=True).rc == 0
    first.wait_closed()
    ev = r.wait_event("client.disconnected", clientid=uid, peername=first_addr)
    assert ev["reason"] == "discarded"


@pytest.mark.slow
def test_disconnected_keepalive_timeout(rx, broker, raw, uid):
    r = rx()
    b = start_broker(broker, r, events=DISCONNECT_EVENTS)
    c = raw(b, version=5)
    assert c.connect(uid, keepalive=1).rc == 0
    c.wait_closed(timeout=5)  # 1.5 x keepalive without a packet
    ev = r.wait_event("client.disconnected", clientid=uid)
    assert ev["reason"] == "keepalive_timeout"


@pytest.mark.parametrize("version", [4, 5])
def test_disconnected_tcp_closed(rx, broker, raw, uid, version):
    r = rx()
    b = start_broker(broker, r, events=DISCONNECT_EVENTS)
    c = raw(b, version=version)
    assert c.connect(uid).rc == 0
    me = addr(c.sock.getsockname())
    c.close()  # FIN without DISCONNECT
    ev = r.wait_event("client.disconnected", clientid=uid)
    assert (ev["reason"], ev["peername"]) == ("tcp_closed", me)


@pytest.mark.parametrize("version", [4, 5])
def test_disconnected_protocol_error(rx, broker, raw, uid, version):
    r = rx()
    b = start_broker(broker, r, events=DISCONNECT_EVENTS)
    c = raw(b, version=version)
    assert c.connect(uid).rc == 0
    c.send(connect_packet(uid, version=version))  # a second CONNECT [MQTT-3.1.0-2]
    c.wait_closed()
    ev = r.wait_event("client.disconnected", clientid=uid)
    assert ev["reason"] == "protocol_error"


@pytest.mark.parametrize("version", [4, 5])
def test_disconnected_malformed_packet(rx, broker, raw, uid, version):
    r = rx()
    b = start_broker(broker, r, events=DISCONNECT_EVENTS)
    c = raw(b, version=version)
    assert c.connect(uid).rc == 0
    c.send(b"\x30\xff\xff\xff\xff\x7f")  # a remaining length of five bytes
    c.wait_closed()
    ev = r.wait_event("client.disconnected", clientid=uid)
    assert ev["reason"] == "malformed_packet"


# ---------------------------------------------------------------------------- message.dropped
@pytest.mark.parametrize("qos", [0, 1, 2])
def test_message_dropped_no_subscribers(rx, broker, raw, uid, qos):
    r = rx()
    b = start_broker(broker, r, events=["message.publish", "message.dropped"])
    c = raw(b)
    assert c.connect(uid).rc == 0
    c.publish(f"{uid}/nobody", b"lost", qos=qos, pid=3)
    ev = r.wait_event("message.dropped", topic=f"{uid}/nobody")
    publish = r.wait_event("message.publish", topic=f"{uid}/nobody")
    assert (ev["reason"], ev["qos"], ev["clientid"], ev["payload"]) == ("no_subscribers", qos, uid, "lost")
    assert ev["id"] == publish["id"]


def test_message_dropped_receive_maximum_exceeded(rx, broker, raw, uid):
    r = rx()
    b = start_broker(broker, r, events=["message.dropped"], mqtt={"receive_maximum": 2})
    c = raw(b)
    ack = c.connect(uid)
    assert ack.rc == 0
    topic = f"{uid}/q2"
    for pid in (1, 2):
        c.send(publish_packet(topic, f"m{pid}".encode(), qos=2, pid=pid))
        assert parse_ack(c.expect(PUBREC))[0] == pid
    c.send(publish_packet(topic, b"m3", qos=2, pid=3))  # a third one before any PUBREL
    # m1 and m2 were accepted and routed to nobody (no_subscribers); m3 was refused
    ev = r.wait_event("message.dropped", topic=topic, reason="receive_maximum_exceeded")
    assert (ev["payload"], ev["qos"], ev["clientid"]) == ("m3", 2, uid)


def test_message_dropped_packet_identifier_inuse(rx, broker, raw, uid):
    r = rx()
    b = start_broker(broker, r, events=["message.dropped"])
    c = raw(b)
    assert c.connect(uid).rc == 0
    topic = f"{uid}/q2"
    c.send(publish_packet(topic, b"once", qos=2, pid=7))
    assert parse_ack(c.expect(PUBREC))[0] == 7
    c.send(publish_packet(topic, b"once", qos=2, pid=7, dup=True))  # re-sent before PUBREL
    assert parse_ack(c.expect(PUBREC))[0] == 7
    c.send(ack_packet(PUBREL, 7))
    assert parse_ack(c.expect(PUBCOMP))[0] == 7
    ev = r.wait_event("message.dropped", topic=topic, reason="packet_identifier_inuse")
    assert (ev["payload"], ev["qos"], ev["clientid"]) == ("once", 2, uid)
    assert ev["flags"]["dup"] is True


# ---------------------------------------------------------------------------- delivery.dropped
def offline_subscriber(raw, b, uid, topic, qos=1):
    """A persistent subscriber that subscribes and goes away; its session keeps queueing."""
    sub = persistent(raw, b, f"{uid}-sub")
    assert sub.subscribe(topic, qos=qos) == [qos]
    sub.disconnect()
    sub.wait_closed()
    return sub


@pytest.mark.parametrize(("qos", "reason"), [(1, "queue_full"), (0, "qos0_msg")])
def test_delivery_dropped_offline_queue_overflow(rx, broker, raw, uid, qos, reason):
    r = rx()
    b = start_broker(broker, r, events=["message.publish", "delivery.dropped"], mqtt={"max_queued_messages": 2})
    topic = f"{uid}/t"
    offline_subscriber(raw, b, uid, topic)
    pub = raw(b)
    assert pub.connect(f"{uid}-pub").rc == 0
    for i in range(5):
        pub.publish(topic, f"{i}".encode(), qos=qos, pid=i + 1)
    pub.ping()
    published = r.wait_events("message.publish", 5, topic=topic)
    dropped = r.wait_events("delivery.dropped", 3, topic=topic)
    r.wait_quiet(0.3)
    dropped = r.events("delivery.dropped", topic=topic)
    assert len(dropped) == 3, f"5 messages into a queue of 2: 3 dropped, got {dropped}"
    ids = {e["id"] for e in published}
    for ev in dropped:
        assert ev["reason"] == reason
        assert ev["qos"] == qos
        assert (ev["clientid"], ev["from_clientid"]) == (f"{uid}-sub", f"{uid}-pub")
        assert ev["id"] in ids
    assert len({e["id"] for e in dropped}) == 3


def test_delivery_dropped_no_local(rx, broker, clients, uid):
    r = rx()
    b = start_broker(broker, r, events=["delivery.dropped"])
    c = clients(b, uid)
    c.subscribe(f"{uid}/t", qos=1, no_local=True)
    c.publish(f"{uid}/t", b"mine", qos=1)
    ev = r.wait_event("delivery.dropped", topic=f"{uid}/t")
    assert (ev["reason"], ev["clientid"], ev["from_clientid"], ev["payload"]) == ("no_local", uid, uid, "mine")


# delivery.dropped with reason expired (a queued copy outliving its Message Expiry Interval) is
# timing: tests/unit/test_timers.py observes it through the EventRouter, on the broker's clock.


# ---------------------------------------------------------------------------- client.connack
@pytest.mark.parametrize("version", [4, 5])
def test_connack_success(rx, broker, raw, uid, version):
    r = rx()
    b = start_broker(broker, r, events=["client.connack"])
    c = raw(b, version=version)
    assert c.connect(uid).rc == 0
    ev = r.wait_event("client.connack", clientid=uid)
    assert (ev["reason_code"], ev["proto_ver"]) == ("success", version)


def test_connack_refused_v311_empty_client_id_without_clean_session(rx, broker, raw, uid):
    """MQTT 5 reason names even for 3.1.1 clients (CONNACK return code 2 here)."""
    r = rx()
    b = start_broker(broker, r, events=["client.connack", "client.connected", "client.disconnected"])
    c = raw(b, version=4)
    me = addr(c.sock.getsockname())
    c.send(connect_packet("", version=4, clean=False))
    assert parse_connack(c.expect(CONNACK), 4).rc == 2  # identifier rejected [MQTT-3.1.3-8]
    ev = r.wait_event("client.connack", peername=me)
    assert (ev["reason_code"], ev["proto_ver"]) == ("client_identifier_not_valid", 4)
    assert isinstance(ev["clientid"], str)
    c.wait_closed()
    r.wait_quiet(0.3)
    # connected / disconnected are for clients that got in
    assert not r.events("client.connected", peername=me)
    assert not r.events("client.disconnected", peername=me)


def test_connack_refused_v5_client_id_too_long(rx, broker, raw, uid):
    r = rx()
    b = start_broker(broker, r, events=["client.connack", "client.connected"], mqtt={"max_clientid_len": 23})
    c = raw(b, version=5)
    me = addr(c.sock.getsockname())
    c.send(connect_packet("x" * 30, version=5))
    assert parse_connack(c.expect(CONNACK), 5).rc == 0x85
    ev = r.wait_event("client.connack", peername=me)
    assert (ev["reason_code"], ev["proto_ver"]) == ("client_identifier_not_valid", 5)
    c.wait_closed()
    r.wait_quiet(0.3)
    assert not r.events("client.connected", peername=me)
