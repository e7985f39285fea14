"""Malformed and illegal input on raw sockets: the offender is closed, everyone else carries on."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import pytest

from .rawmqtt import (
    DISCONNECT,
    connect_packet,
    packet,
    parse_disconnect,
    publish_packet,
    subscribe_packet,
    utf8,
)


@dataclass
class Case:
    name: str
    version: int  # 4 or 5 (ignored when connect is False)
    connect: bool  # complete a CONNECT first
    data: bytes
    reason: int | None = None  # v5: the DISCONNECT reason the broker must send before closing
    counter: str | None = None  # disconnects.<counter> that must grow


CASES = [
    Case("garbage-before-connect", 5, False, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
    Case("binary-garbage", 5, False, bytes(range(256))),
    Case("pingreq-first", 5, False, b"\xc0\x00"),
    Case("subscribe-first", 4, False, subscribe_packet(1, [("a", 0)], version=4)),
    Case("publish-first", 4, False, publish_packet("a", b"x", version=4)),
    Case("connect-reserved-flag", 4, False, connect_packet("x", version=4).replace(b"MQTT\x04\x02", b"MQTT\x04\x03")),
    Case("second-connect-v5", 5, True, connect_packet("again", version=5), 0x82, "protocol_error"),
    Case("second-connect-v311", 4, True, connect_packet("again", version=4), None, "protocol_error"),
    Case("publish-wildcard-topic-v5", 5, True, publish_packet("a/+", b"x", version=5), 0x90),
    Case("publish-hash-topic-v5", 5, True, publish_packet("a/#", b"x", qos=1, pid=1, version=5), 0x90),
    Case("publish-wildcard-topic-v311", 4, True, publish_packet("a/+", b"x", version=4)),
    Case("publish-empty-topic-v311", 4, True, publish_packet("", b"x", version=4)),
    Case("remaining-length-5-bytes-v5", 5, True, b"\x30\xff\xff\xff\xff\x7f", 0x81, "malformed_packet"),
    Case("remaining-length-5-bytes-v311", 4, True, b"\x30\xff\xff\xff\xff\x7f", None, "malformed_packet"),
    Case("remaining-length-before-connect", 5, False, b"\x10\xff\xff\xff\xff\x7f"),
    Case("publish-qos3-v5", 5, True, b"\x36\x07\x00\x01a\x00\x01\x00x"),
    Case("publish-qos3-v311", 4, True, b"\x36\x06\x00\x01a\x00\x01x"),
    Case("publish-qos0-dup-v311", 4, True, b"\x38\x04\x00\x01ax"),
    Case("publish-packet-id-zero-v311", 4, True, b"\x32\x06\x00\x01a\x00\x00x"),
    Case("subscribe-bad-flags-v311", 4, True, packet(0x80, b"\x00\x01" + utf8("a") + b"\x00")),
    Case("subscribe-no-filters-v311", 4, True, packet(0x82, b"\x00\x01")),
    Case("subscribe-qos3-v311", 4, True, packet(0x82, b"\x00\x01" + utf8("a") + b"\x03")),
    Case("topic-invalid-utf8-v311", 4, True, packet(0x30, b"\x00\x02\xc3\x28x")),
    Case("topic-nul-char-v311", 4, True, packet(0x30, b"\x00\x03a\x00bx")),
    Case("truncated-string-v311", 4, True, packet(0x30, b"\x00\x10ab")),
    Case("reserved-type-0", 4, True, b"\x00\x00"),
    Case("connack-from-client-v5", 5, True, b"\x20\x03\x00\x00\x00"),
    Case("unknown-property-v5", 5, True, packet(0x30, utf8("a") + b"\x02\x7f\x00x"), 0x81),
    Case("bad-subscription-options-v5", 5, True, packet(0x82, b"\x00\x01\x00" + utf8("a") + b"\xc0")),
    Case("auth-without-method-v5", 5, True, b"\xf0\x00"),
]


@pytest.fixture(scope="module")
def healthy(default_broker):
    """A paho client connected before any bad one, for the whole module."""
    from .pahoc import Client

    c = Client(default_broker, "healthy-bad-input-module")
    c.subscribe("healthy/bad-input/#", qos=1)
    c.round_trip("healthy/bad-input/x")
    yield c
    c.close()


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_closes_only_the_offender(default_broker, raw, healthy, uid, case):
    before = default_broker.stat("disconnects", case.counter) if case.counter else 0
    bad = raw(default_broker, version=case.version)
    if case.connect:
        assert bad.connect(uid).rc == 0
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        bad.send(case.data)  # the broker may close while we are still sending
    got = bad.wait_closed(3)
    if case.reason is not None:
        assert got, f"expected DISCONNECT {case.reason:#x} before the close"
        assert got[-1].type == DISCONNECT, got
        assert parse_disconnect(got[-1])[0] == case.reason, got
    if not case.connect:
        # nothing but (at most) a refusing CONNACK may come back to a client that never connected
        assert all(p.type == 2 and p.body[1] != 0 for p in got), got
    elif case.version == 4:
        assert got == [], f"v3.1.1 has no DISCONNECT from the server: {got}"
    else:
        assert all(p.type == DISCONNECT and parse_disconnect(p)[0] >= 0x80 for p in got), got
    # the healthy client still publishes and receives
    healthy.round_trip(f"healthy/bad-input/{uid}")
    assert not healthy.disconnected.is_set()
    assert default_broker.alive()
    if case.counter:
        value = default_broker.wait_stat(("disconnects", case.counter), lambda v: v > before)
        assert value > before, f"disconnects.{case.counter} did not grow"


def test_partial_packet_then_close(default_broker, raw, healthy, uid):
    bad = raw(default_broker, version=4)
    assert bad.connect(uid).rc == 0
    bad.send(b"\x30\x20\x00\x05abc")  # half a PUBLISH
    bad.close()
    healthy.round_trip(f"healthy/bad-input/{uid}")


def test_many_bad_connections_in_a_row(default_broker, raw, healthy, uid):
    for i in range(30):
        bad = raw(default_broker, version=4)
        bad.send(bytes([0x10 + (i % 16)]) + b"\xff" * 8)
        bad.wait_closed(3)
        bad.close()
    healthy.round_trip(f"healthy/bad-input/{uid}")
    assert default_broker.alive()


def test_connect_then_silence_before_connect_is_bounded(default_broker, raw, healthy, uid):
    """A client that opens TCP and sends half a CONNECT must not block others."""
    slow = raw(default_broker, version=4)
    slow.send(connect_packet(uid, version=4)[:5])
    healthy.round_trip(f"healthy/bad-input/{uid}")
    other = raw(default_broker, version=4)
    assert other.connect(uid + "-other").rc == 0
    other.ping()
