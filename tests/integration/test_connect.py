"""CONNECT / CONNACK for protocol levels 3.1, 3.1.1 and 5.0; keepalive; client id rules."""

from __future__ import annotations

import pytest

from .pahoc import V5, V31, V311
from .rawmqtt import (
    P_ASSIGNED_CLIENT_ID,
    P_MAXIMUM_PACKET_SIZE,
    P_RECEIVE_MAXIMUM,
    P_SERVER_KEEP_ALIVE,
    P_SESSION_EXPIRY,
    P_TOPIC_ALIAS_MAXIMUM,
    PUBACK,
    PUBLISH,
    connect_packet,
    parse_ack,
    parse_connack,
    parse_publish,
    publish_packet,
)


@pytest.mark.parametrize("protocol", [V311, V5, V31], ids=["v311", "v5", "v31"])
def test_paho_connect_and_round_trip(default_broker, clients, uid, protocol):
    c = clients(default_broker, uid, protocol=protocol)
    assert c.connack_rc == 0
    assert c.session_present is False
    assert c.subscribe(f"{uid}/t", qos=1) == [1]
    c.round_trip(f"{uid}/t")


def test_v5_connack_properties_default(default_broker, raw, uid):
    c = raw(default_broker, version=5)
    ack = c.connect(uid)
    assert ack.rc == 0
    assert ack.session_present is False
    assert ack.props.get(P_RECEIVE_MAXIMUM, 65535) == 32
    assert ack.props.get(P_MAXIMUM_PACKET_SIZE) == 1048576
    assert ack.props.get(P_TOPIC_ALIAS_MAXIMUM, 0) == 65535
    assert ack.props.get(P_ASSIGNED_CLIENT_ID) is None  # the client chose its id


def test_v5_connack_properties_follow_config(broker, raw, uid):
    b = broker("[mqtt]\nreceive_maximum = 7\nmax_packet_size = 4096\ntopic_alias_maximum = 9\n")
    ack = raw(b).connect(uid)
    assert ack.rc == 0
    assert ack.props.get(P_RECEIVE_MAXIMUM) == 7
    assert ack.props.get(P_MAXIMUM_PACKET_SIZE) == 4096
    assert ack.props.get(P_TOPIC_ALIAS_MAXIMUM) == 9


def test_v5_empty_client_id_gets_assigned_id(default_broker, raw, clients, uid):
    c = raw(default_broker)
    ack = c.connect("", clean=True)
    assert ack.rc == 0
    assigned = ack.props.get(P_ASSIGNED_CLIENT_ID)
    assert isinstance(assigned, str)
    assert assigned
    # the connection is usable
    assert c.subscribe(f"{uid}/t", qos=0) == [0]
    c.ping()
    # two anonymous clients get different ids
    ack2 = raw(default_broker).connect("", clean=True)
    assert ack2.props.get(P_ASSIGNED_CLIENT_ID) not in (None, assigned)


def test_v311_connack_bytes(default_broker, raw, uid):
    c = raw(default_broker, version=4)
    c.send(connect_packet(uid, version=4))
    pkt = c.recv()
    assert pkt.first == 0x20
    assert pkt.body == b"\x00\x00"


def test_v311_empty_client_id_clean_session_accepted(default_broker, raw):
    c = raw(default_broker, version=4)
    c.send(connect_packet("", version=4, clean=True))
    assert c.recv().body == b"\x00\x00"
    c.ping()


def test_v311_empty_client_id_without_clean_session_rejected(default_broker, raw):
    c = raw(default_broker, version=4)
    c.send(connect_packet("", version=4, clean=False))
    pkt = c.recv()
    assert pkt.first == 0x20
    assert pkt.body == b"\x00\x02"  # identifier rejected
    c.wait_closed(3)


def test_v31_mqisdp_connect(default_broker, raw, uid):
    c = raw(default_broker, version=3)
    c.send(connect_packet(uid, version=3))
    pkt = c.recv()
    assert (pkt.first, pkt.body) == (0x20, b"\x00\x00")
    assert c.subscribe(f"{uid}/t", qos=1) == [1]
    c.send(publish_packet(f"{uid}/t", b"hello", qos=1, pid=7, version=3))
    got = sorted([c.recv(), c.recv()], key=lambda p: p.type)  # our PUBLISH echoed back, and its PUBACK
    assert [p.type for p in got] == [PUBLISH, PUBACK]
    assert parse_ack(got[1], 3)[0] == 7
    echo = parse_publish(got[0], 3)
    assert (echo.topic, echo.payload, echo.qos) == (f"{uid}/t", b"hello", 1)


@pytest.mark.parametrize("level", [1, 2, 6, 7, 0x7F])
def test_unsupported_protocol_level(default_broker, raw, uid, level):
    c = raw(default_broker, version=4)
    c.send(connect_packet(uid, version=level, proto_name="MQTT"))
    got = c.wait_closed(3)
    if got:  # a CONNACK is optional (MAY) in v5 and required in 3.1.1 form
        assert len(got) == 1, got
        pkt = got[0]
        assert pkt.type == 2, got
        assert pkt.body[1] in (0x01, 0x84), got


def test_wrong_protocol_name_is_closed(default_broker, raw, uid):
    c = raw(default_broker, version=4)
    c.send(connect_packet(uid, version=4, proto_name="MQTX"))
    got = c.wait_closed(3)
    assert all(p.type == 2 and p.body[1] != 0 for p in got), got


def test_unsupported_level_v5_form_when_client_speaks_v5(default_broker, raw, uid):
    # level 6 with the v5 layout (a property block after keepalive); the broker must not accept it
    c = raw(default_broker, version=5)
    pkt = connect_packet(uid, version=5)
    pkt = pkt.replace(b"\x00\x04MQTT\x05", b"\x00\x04MQTT\x06", 1)
    c.send(pkt)
    got = c.wait_closed(3)
    assert all(p.type == 2 and p.body[1] in (0x01, 0x84) for p in got), got


def test_v5_client_id_too_long(broker, raw):
    b = broker("[mqtt]\nmax_clientid_len = 23\n")  # 23 is the least a server must accept
    c = raw(b)
    ack = c.connect("x" * 24)
    assert ack.rc == 0x85  # Client Identifier not valid
    c.wait_closed(3)
    ok = raw(b)
    assert ok.connect("y" * 23).rc == 0
    assert b.wait_stat(("connects", "success"), lambda v: v == 1) == 1
    s = b.stats()["connects"]
    assert sum(v for k, v in s.items() if k != "success") >= 1, s


def test_v311_client_id_too_long(broker, raw):
    b = broker("[mqtt]\nmax_clientid_len = 23\n")
    c = raw(b, version=4)
    c.send(connect_packet("x" * 24, version=4))
    assert c.recv().body == b"\x00\x02"
    c.wait_closed(3)


def test_max_keepalive_reduces_v5_keepalive(broker, raw, uid):
    b = broker("[mqtt]\nmax_keepalive = 10\n")
    ack = raw(b).connect(uid, keepalive=60)
    assert ack.rc == 0
    assert ack.props.get(P_SERVER_KEEP_ALIVE) == 10
    ack2 = raw(b).connect(uid + "-small", keepalive=5)
    assert ack2.props.get(P_SERVER_KEEP_ALIVE, 5) == 5


def test_max_session_expiry_reduced_in_connack(broker, raw, uid):
    b = broker("[mqtt]\nmax_session_expiry_interval = 10\n")
    ack = raw(b).connect(uid, clean=True, properties=[(P_SESSION_EXPIRY, 1000)])
    assert ack.rc == 0
    assert ack.props.get(P_SESSION_EXPIRY) == 10


def test_pingreq_pingresp(default_broker, raw, uid):
    for version in (4, 5):
        c = raw(default_broker, version=version)
        assert c.connect(f"{uid}-{version}").rc == 0
        c.send(b"\xc0\x00")
        pkt = c.recv()
        assert (pkt.first, pkt.body) == (0xD0, b"")


def test_disconnect_closes_and_is_counted(broker, raw, uid):
    b = broker()
    c = raw(b, version=4)
    assert c.connect(uid).rc == 0
    c.disconnect()
    assert c.wait_closed(3) == []
    assert b.wait_stat(("disconnects", "normal"), lambda v: v >= 1) == 1


def test_tcp_close_is_counted(broker, raw, uid):
    b = broker()
    c = raw(b, version=4)
    assert c.connect(uid).rc == 0
    c.close()
    assert b.wait_stat(("disconnects", "tcp_closed"), lambda v: v >= 1) == 1
    assert b.wait_stat(("connections",), lambda v: v == 0) == 0


# ---------------------------------------------------------------------------- keepalive
# When the keepalive closes (exactly 1.5 x keepalive after the last bytes, traffic pushing it,
# keepalive 0 never) is timing, on the broker's clock: tests/unit/test_timers.py. Here: a real
# broker process does close a silent client's socket, as a condition waited for (bounded).
@pytest.mark.parametrize("version", [4, 5])
def test_keepalive_timeout_closes_idle_client(broker, raw, uid, version):
    b = broker()
    c = raw(b, version=version)
    c.send(connect_packet(uid, version=version, keepalive=1))
    ack = parse_connack(c.expect(2), version)
    assert ack.rc == 0
    got = c.wait_closed(5.0)
    if version == 5:
        assert [(p.type, p.body[:1]) for p in got] == [(14, b"\x8d")], got  # DISCONNECT 0x8D
    else:
        assert got == []
    assert b.wait_stat(("disconnects", "keepalive_timeout"), lambda v: v >= 1) == 1
