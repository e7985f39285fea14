"""QoS 0/1/2 in both directions, exactly-once, packet ids, inflight windows, TCP_NODELAY."""

from __future__ import annotations

import time

import pytest

from .pahoc import V5, V311
from .rawmqtt import (
    DISCONNECT,
    P_RECEIVE_MAXIMUM,
    P_SESSION_EXPIRY,
    PUBACK,
    PUBCOMP,
    PUBREC,
    PUBREL,
    ack_packet,
    parse_ack,
    parse_disconnect,
    publish_packet,
    sub_options,
)


@pytest.mark.parametrize("protocol", [V311, V5], ids=["v311", "v5"])
@pytest.mark.parametrize("sub_qos", [0, 1, 2])
@pytest.mark.parametrize("pub_qos", [0, 1, 2])
def test_delivered_at_min_qos(default_broker, clients, uid, protocol, pub_qos, sub_qos):
    topic = f"{uid}/q"
    sub = clients(default_broker, uid + "-s", protocol=protocol)
    assert sub.subscribe(topic, qos=sub_qos) == [sub_qos]
    pub = clients(default_broker, uid + "-p", protocol=protocol)
    pub.publish(topic, b"payload", qos=pub_qos)
    (m,) = sub.wait_messages(1)
    assert m.topic == topic
    assert m.payload == b"payload"
    assert m.qos == min(pub_qos, sub_qos)
    assert m.retain is False
    assert m.dup is False
    sub.assert_no_message(0.2)


@pytest.mark.parametrize("protocol", [V311, V5], ids=["v311", "v5"])
def test_qos2_exactly_once_many(default_broker, clients, uid, protocol):
    topic = f"{uid}/q2"
    sub = clients(default_broker, uid + "-s", protocol=protocol)
    sub.subscribe(topic, qos=2)
    pub = clients(default_broker, uid + "-p", protocol=protocol)
    n = 50
    for i in range(n):
        pub.publish(topic, f"m{i}".encode(), qos=2, wait=False)
    pub.publish(topic, b"end", qos=2)
    sub.wait_payload(b"end", timeout=10)
    payloads = [m.payload for m in sub.received()]
    assert payloads == [f"m{i}".encode() for i in range(n)] + [b"end"]  # in order, no duplicates
    assert all(m.qos == 2 for m in sub.received())


@pytest.mark.parametrize("version", [4, 5])
def test_qos2_publish_resent_after_reconnect_delivered_once(default_broker, raw, clients, uid, version):
    """The publisher loses the connection before PUBREC, reconnects and resends with DUP=1."""
    topic = f"{uid}/dup"
    sub = clients(default_broker, uid + "-s")
    sub.subscribe(topic, qos=2)
    kw = {"clean": False, **({"properties": [(P_SESSION_EXPIRY, 60)]} if version == 5 else {})}
    p = raw(default_broker, version=version)
    assert p.connect(uid + "-p", **kw).rc == 0
    p.send(publish_packet(topic, b"once", qos=2, pid=10, version=version))
    assert parse_ack(p.expect(PUBREC), version)[0] == 10
    p.close()  # PUBREC "lost": no PUBREL sent
    p2 = raw(default_broker, version=version)
    assert p2.connect(uid + "-p", **kw).session_present is True
    p2.send(publish_packet(topic, b"once", qos=2, pid=10, dup=True, version=version))
    assert parse_ack(p2.expect(PUBREC), version)[0] == 10
    p2.send(ack_packet(PUBREL, 10, version))
    assert parse_ack(p2.expect(PUBCOMP), version)[0] == 10
    p2.publish(topic, b"after", qos=1, pid=11)
    # paho hands a QoS 2 message to the application only after PUBREL, so the QoS 1 "after" may
    # overtake "once" at the client: wait for both, then check that nothing came twice.
    sub.wait_messages(2)
    sub.assert_no_message(0.3)
    assert sorted(m.payload for m in sub.received()) == [b"after", b"once"]


@pytest.mark.parametrize("version", [4, 5])
def test_qos2_pubrel_resent_after_reconnect_delivered_once(default_broker, raw, clients, uid, version):
    """The publisher loses the connection before PUBCOMP, reconnects and resends only PUBREL."""
    topic = f"{uid}/rel"
    sub = clients(default_broker, uid + "-s")
    sub.subscribe(topic, qos=2)
    kw = {"clean": False, **({"properties": [(P_SESSION_EXPIRY, 60)]} if version == 5 else {})}
    p = raw(default_broker, version=version)
    assert p.connect(uid + "-p", **kw).rc == 0
    p.send(publish_packet(topic, b"once", qos=2, pid=20, version=version))
    assert parse_ack(p.expect(PUBREC), version)[0] == 20
    p.send(ack_packet(PUBREL, 20, version))
    p.close()  # whether or not the PUBCOMP was sent, we never read it
    p2 = raw(default_broker, version=version)
    assert p2.connect(uid + "-p", **kw).session_present is True
    p2.send(ack_packet(PUBREL, 20, version))
    assert parse_ack(p2.expect(PUBCOMP), version)[0] == 20
    p2.publish(topic, b"after", qos=1, pid=21)
    # paho hands a QoS 2 message to the application only after PUBREL, so the QoS 1 "after" may
    # overtake "once" at the client: wait for both, then check that nothing came twice.
    sub.wait_messages(2)
    sub.assert_no_message(0.3)
    assert sorted(m.payload for m in sub.received()) == [b"after", b"once"]


def test_outbound_qos1_packet_ids_and_puback(default_broker, raw, clients, uid):
    topic = f"{uid}/ids"
    s = raw(default_broker)
    assert s.connect(uid + "-s").rc == 0
    assert s.subscribe(topic, qos=1) == [1]
    pub = clients(default_broker, uid + "-p")
    for i in range(5):
        pub.publish(topic, f"{i}".encode(), qos=1)
    got = [s.recv_publish() for _ in range(5)]
    assert [g.payload for g in got] == [b"0", b"1", b"2", b"3", b"4"]
    assert all(g.qos == 1 and not g.dup for g in got)
    pids = [g.pid for g in got]
    assert all(pid and 0 < pid <= 0xFFFF for pid in pids)
    assert len(set(pids)) == 5, f"packet ids reused while unacked: {pids}"
    for pid in pids:
        s.send(ack_packet(PUBACK, pid))
    s.ping()


def test_outbound_qos2_flow(default_broker, raw, clients, uid):
    topic = f"{uid}/q2flow"
    s = raw(default_broker)
    assert s.connect(uid + "-s").rc == 0
    s.subscribe(topic, qos=2)
    pub = clients(default_broker, uid + "-p")
    pub.publish(topic, b"x", qos=2)
    m = s.recv_publish()
    assert (m.qos, m.payload, m.dup) == (2, b"x", False)
    s.send(ack_packet(PUBREC, m.pid))
    rel = s.expect(PUBREL)
    assert rel.first == 0x62
    assert parse_ack(rel)[0] == m.pid
    s.send(ack_packet(PUBCOMP, m.pid))
    s.ping()
    s.assert_silent(0.3)  # no redelivery of a completed flow


@pytest.mark.parametrize("version", [4, 5])
def test_inbound_qos_acks_bytes(default_broker, raw, uid, version):
    c = raw(default_broker, version=version)
    assert c.connect(uid).rc == 0
    c.send(publish_packet(f"{uid}/x", b"1", qos=1, pid=0x1234, version=version))
    ack = c.expect(PUBACK)
    assert ack.first == 0x40
    assert ack.body[:2] == b"\x12\x34"
    if version == 4:
        assert ack.body == b"\x12\x34"
    c.send(publish_packet(f"{uid}/x", b"2", qos=2, pid=0x0101, version=version))
    rec = c.expect(PUBREC)
    assert rec.first == 0x50
    assert rec.body[:2] == b"\x01\x01"
    c.send(ack_packet(PUBREL, 0x0101, version))
    comp = c.expect(PUBCOMP)
    assert comp.first == 0x70
    assert comp.body[:2] == b"\x01\x01"


def test_receive_maximum_window_of_subscriber(default_broker, raw, clients, uid):
    topic = f"{uid}/win"
    s = raw(default_broker)
    assert s.connect(uid + "-s", properties=[(P_RECEIVE_MAXIMUM, 2)]).rc == 0
    s.subscribe(topic, qos=1)
    pub = clients(default_broker, uid + "-p")
    for i in range(6):
        pub.publish(topic, f"{i}".encode(), qos=1)
    first = [s.recv_publish(), s.recv_publish()]
    assert [m.payload for m in first] == [b"0", b"1"]
    s.assert_silent(0.5)  # window full: nothing more until an ack
    s.send(ack_packet(PUBACK, first[0].pid))
    third = s.recv_publish()
    assert third.payload == b"2"
    s.assert_silent(0.3)
    pending = [first[1], third]
    seen = [b"0", b"1", b"2"]
    while pending:
        m = pending.pop(0)
        s.send(ack_packet(PUBACK, m.pid))
        if len(seen) < 6:
            nxt = s.recv_publish()
            seen.append(nxt.payload)
            pending.append(nxt)
    assert seen == [f"{i}".encode() for i in range(6)]
    s.assert_silent(0.2)


def test_max_inflight_config_caps_window(broker, raw, clients, uid):
    b = broker("[mqtt]\nmax_inflight = 3\n")
    topic = f"{uid}/inflight"
    s = raw(b)
    assert s.connect(uid + "-s").rc == 0  # client Receive-Maximum defaults to 65535
    s.subscribe(topic, qos=2)
    pub = clients(b, uid + "-p")
    for i in range(8):
        pub.publish(topic, f"{i}".encode(), qos=1)
    got = [s.recv_publish() for _ in range(3)]
    s.assert_silent(0.5)
    s.send(ack_packet(PUBACK, got[0].pid))
    assert s.recv_publish().payload == b"3"
    s.assert_silent(0.3)


def test_inbound_receive_maximum_exceeded(broker, raw, uid):
    b = broker("[mqtt]\nreceive_maximum = 2\n")
    c = raw(b)
    ack = c.connect(uid)
    assert ack.props.get(P_RECEIVE_MAXIMUM) == 2
    topic = f"{uid}/rm"
    for pid in (1, 2):
        c.send(publish_packet(topic, b"x", qos=2, pid=pid))
        assert parse_ack(c.expect(PUBREC))[0] == pid
    c.send(publish_packet(topic, b"x", qos=2, pid=3))  # third unacknowledged QoS 2: over the limit
    got = c.wait_closed(3)
    assert got, "expected DISCONNECT 0x93 before the close"
    assert got[-1].type == DISCONNECT
    assert parse_disconnect(got[-1])[0] == 0x93


@pytest.mark.parametrize("version", [4, 5])
def test_nodelay_round_trips(default_broker, raw, uid, version):
    """200 sequential QoS0 round trips; with Nagle + delayed ACK this takes ~40 ms each."""
    topic = f"{uid}/rt"
    sub = raw(default_broker, version=version)
    assert sub.connect(uid + "-s").rc == 0
    sub.subscribe([(topic, sub_options(0))], pid=1)
    pub = raw(default_broker, version=version)
    assert pub.connect(uid + "-p").rc == 0
    t0 = time.monotonic()
    for i in range(200):
        pub.send(publish_packet(topic, str(i).encode(), version=version))
        assert sub.recv_publish(5).payload == str(i).encode()
    elapsed = time.monotonic() - t0
    assert elapsed < 10.0, f"200 round trips took {elapsed:.1f}s"
