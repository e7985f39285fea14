"""MQTT 5 property blocks: names, decoding, encoding and placement rules (section 2.2.2)."""

from __future__ import annotations

from typing import Any

import pytest

from mqhook.errors import MalformedPacket, ProtocolError
from mqhook.mqtt import packets as p
from mqhook.mqtt.properties import ALLOWED, IDS, NAMES, WILL, decode_properties, encode_properties


def h(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


def decode(block: bytes, ptype: int) -> dict[str, Any]:
    props, pos = decode_properties(block, 0, len(block), ptype)
    assert pos == len(block)
    return props


EXPECTED_NAMES = {
    0x01: "Payload-Format-Indicator",
    0x02: "Message-Expiry-Interval",
    0x03: "Content-Type",
    0x08: "Response-Topic",
    0x09: "Correlation-Data",
    0x0B: "Subscription-Identifier",
    0x11: "Session-Expiry-Interval",
    0x12: "Assigned-Client-Identifier",
    0x13: "Server-Keep-Alive",
    0x15: "Authentication-Method",
    0x16: "Authentication-Data",
    0x17: "Request-Problem-Information",
    0x18: "Will-Delay-Interval",
    0x19: "Request-Response-Information",
    0x1A: "Response-Information",
    0x1C: "Server-Reference",
    0x1F: "Reason-String",
    0x21: "Receive-Maximum",
    0x22: "Topic-Alias-Maximum",
    0x23: "Topic-Alias",
    0x24: "Maximum-QoS",
    0x25: "Retain-Available",
    0x26: "User-Property",
    0x27: "Maximum-Packet-Size",
    0x28: "Wildcard-Subscription-Available",
    0x29: "Subscription-Identifier-Available",
    0x2A: "Shared-Subscription-Available",
}


def test_names_and_ids() -> None:
    assert EXPECTED_NAMES == NAMES
    assert {name: pid for pid, name in EXPECTED_NAMES.items()} == IDS


def test_empty_block() -> None:
    assert decode(h("00"), p.PUBLISH) == {}
    assert encode_properties({}) == h("00")
    assert encode_properties(None) == h("00")


@pytest.mark.parametrize(
    ("block", "ptype", "expected"),
    [
        ("02 01 01", p.PUBLISH, {"Payload-Format-Indicator": 1}),
        ("05 02 00 00 01 2c", p.PUBLISH, {"Message-Expiry-Interval": 300}),
        ("06 03 00 03 74 2f 70", p.PUBLISH, {"Content-Type": "t/p"}),
        ("05 08 00 02 72 2f", WILL, {"Response-Topic": "r/"}),
        ("05 09 00 02 00 ff", p.PUBLISH, {"Correlation-Data": b"\x00\xff"}),
        ("03 0b 80 01", p.SUBSCRIBE, {"Subscription-Identifier": 128}),
        ("05 0b ff ff ff 7f", p.PUBLISH, {"Subscription-Identifier": [268435455]}),
        ("04 0b 01 0b 02", p.PUBLISH, {"Subscription-Identifier": [1, 2]}),
        ("05 11 ff ff ff ff", p.CONNECT, {"Session-Expiry-Interval": 0xFFFFFFFF}),
        ("04 12 00 01 78", p.CONNACK, {"Assigned-Client-Identifier": "x"}),
        ("03 13 00 1e", p.CONNACK, {"Server-Keep-Alive": 30}),
        (
            "0a 15 00 02 6d 31 16 00 02 01 02",
            p.AUTH,
            {"Authentication-Method": "m1", "Authentication-Data": b"\x01\x02"},
        ),
        ("04 17 00 19 01", p.CONNECT, {"Request-Problem-Information": 0, "Request-Response-Information": 1}),
        ("05 18 00 00 00 05", WILL, {"Will-Delay-Interval": 5}),
        ("04 1a 00 01 72", p.CONNACK, {"Response-Information": "r"}),
        ("04 1c 00 01 73", p.DISCONNECT, {"Server-Reference": "s"}),
        ("05 1f 00 02 6f 6b", p.PUBACK, {"Reason-String": "ok"}),
        ("06 21 00 0a 22 00 05", p.CONNECT, {"Receive-Maximum": 10, "Topic-Alias-Maximum": 5}),
        ("03 23 00 07", p.PUBLISH, {"Topic-Alias": 7}),
        ("04 24 01 25 00", p.CONNACK, {"Maximum-QoS": 1, "Retain-Available": 0}),
        ("05 27 00 00 10 00", p.CONNECT, {"Maximum-Packet-Size": 4096}),
        (
            "06 28 00 29 01 2a 01",
            p.CONNACK,
            {
                "Wildcard-Subscription-Available": 0,
                "Subscription-Identifier-Available": 1,
                "Shared-Subscription-Available": 1,
            },
        ),
        (
            "0e 26 00 01 6b 00 01 76 26 00 01 6b 00 01 77",
            p.SUBSCRIBE,
            {"User-Property": [("k", "v"), ("k", "w")]},
        ),
    ],
)
def test_decode_and_encode(block: str, ptype: int, expected: dict[str, Any]) -> None:
    assert decode(h(block), ptype) == expected
    assert encode_properties(expected) == h(block)


def test_user_property_may_be_a_dict_when_encoding() -> None:
    assert encode_properties({"User-Property": {"a": "b"}}) == h("07 26 00 01 61 00 01 62")


def test_encode_unknown_name() -> None:
    with pytest.raises(ValueError, match="unknown MQTT property name 'Nope'"):
        encode_properties({"Nope": 1})


def test_long_block_uses_a_two_byte_length() -> None:
    props = {"Reason-String": "r" * 200}
    block = encode_properties(props)
    assert block[:4] == h("cb 01 1f 00") and block[4] == 200
    assert decode(block, p.DISCONNECT) == props


def _sample(pid: int) -> Any:
    """A legal value for every property, by identifier."""
    samples: dict[int, Any] = {0x26: [("k", "v"), ("k2", "")], 0x09: b"\x00\x01", 0x16: b"d"}
    if pid in samples:
        return samples[pid]
    name = NAMES[pid]
    if name in ("Content-Type", "Response-Topic", "Assigned-Client-Identifier", "Authentication-Method"):
        return "text"
    if name in ("Response-Information", "Server-Reference", "Reason-String"):
        return "text"
    return 1


@pytest.mark.parametrize("ptype", sorted(ALLOWED), ids=lambda t: str(t))
def test_every_allowed_property_round_trips(ptype: int) -> None:
    props = {NAMES[pid]: _sample(pid) for pid in sorted(ALLOWED[ptype])}
    if "Subscription-Identifier" in props and ptype == p.PUBLISH:
        props["Subscription-Identifier"] = [1, 268435455]
    assert decode(encode_properties(props), ptype) == props


@pytest.mark.parametrize(
    ("block", "ptype", "fragment"),
    [
        ("03 23 00 01", p.CONNECT, "property Topic-Alias (0x23) is not allowed in CONNECT"),
        ("05 18 00 00 00 01", p.PUBLISH, "property Will-Delay-Interval (0x18) is not allowed in PUBLISH"),
        ("02 01 00", p.CONNECT, "property Payload-Format-Indicator (0x01) is not allowed in CONNECT"),
        ("02 24 01", p.CONNECT, "property Maximum-QoS (0x24) is not allowed in CONNECT"),
        ("02 0b 01", p.UNSUBSCRIBE, "property Subscription-Identifier (0x0B) is not allowed in UNSUBSCRIBE"),
        ("04 1f 00 01 78", p.PUBLISH, "property Reason-String (0x1F) is not allowed in PUBLISH"),
        ("02 7f 00", p.PUBLISH, "unknown property identifier 0x7F in PUBLISH"),
        ("02 00 00", p.PUBLISH, "unknown property identifier 0x00 in PUBLISH"),
        ("03 11 00 00", p.CONNECT, "Session-Expiry-Interval: truncated, 4 bytes needed, 2 left"),
        ("05 03 00 05 61 62", p.PUBLISH, "Content-Type: length 5 overruns the packet by 3 bytes"),
        ("09 01 00", p.PUBLISH, "property length 9 overruns the packet by 7 bytes"),
        ("02 0b 80", p.PUBLISH, "Subscription-Identifier: variable byte integer truncated"),
        ("06 0b 80 80 80 80 01", p.PUBLISH, "longer than 4 bytes [MQTT-1.5.5-1]"),
        ("80 80 80 80 01", p.PUBLISH, "property length: variable byte integer longer than 4 bytes"),
        ("04 03 00 01 ff", p.PUBLISH, "Content-Type is not valid UTF-8"),
        ("04 03 00 01 00", p.PUBLISH, "Content-Type '\\x00' contains U+0000 [MQTT-1.5.4-2]"),
        ("06 03 00 03 ed a0 80", p.PUBLISH, "Content-Type is not valid UTF-8"),
        ("06 26 00 01 6b 00 01", p.CONNECT, "User-Property value: length 1 overruns the packet by 1 bytes"),
        ("01 01", p.PUBLISH, "Payload-Format-Indicator: truncated, 1 byte needed"),
    ],
)
def test_malformed_blocks(block: str, ptype: int, fragment: str) -> None:
    data = h(block)
    with pytest.raises(MalformedPacket) as info:
        decode_properties(data, 0, len(data), ptype)
    assert info.value.reason_code == 0x81
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("block", "ptype", "code", "fragment"),
    [
        ("04 01 01 01 00", p.PUBLISH, 0x82, "property Payload-Format-Indicator appears more than once in PUBLISH"),
        ("04 0b 01 0b 02", p.SUBSCRIBE, 0x82, "property Subscription-Identifier appears more than once in SUBSCRIBE"),
        ("06 23 00 01 23 00 02", p.PUBLISH, 0x82, "Topic-Alias appears more than once"),
        ("0a 11 00 00 00 01 11 00 00 00 01", p.CONNECT, 0x82, "Session-Expiry-Interval appears more than once"),
        ("02 01 02", p.PUBLISH, 0x82, "property Payload-Format-Indicator is 2, must be 0 or 1"),
        ("02 24 02", p.CONNACK, 0x82, "property Maximum-QoS is 2, must be 0 or 1"),
        ("02 17 05", p.CONNECT, 0x82, "Request-Problem-Information is 5"),
        ("02 0b 00", p.SUBSCRIBE, 0x82, "property Subscription-Identifier must not be 0"),
        ("04 0b 01 0b 00", p.PUBLISH, 0x82, "property Subscription-Identifier must not be 0"),
        ("03 21 00 00", p.CONNECT, 0x82, "property Receive-Maximum must not be 0"),
        ("05 27 00 00 00 00", p.CONNACK, 0x82, "property Maximum-Packet-Size must not be 0"),
        ("03 23 00 00", p.PUBLISH, 0x94, "property Topic-Alias must not be 0 [MQTT-3.3.2-8]"),
    ],
)
def test_protocol_errors(block: str, ptype: int, code: int, fragment: str) -> None:
    data = h(block)
    with pytest.raises(ProtocolError) as info:
        decode_properties(data, 0, len(data), ptype)
    assert type(info.value) is ProtocolError
    assert info.value.reason_code == code
    assert fragment in str(info.value)


def test_decode_within_a_larger_buffer() -> None:
    data = h("ff ff 03 23 00 07 ee")
    with pytest.raises(MalformedPacket):
        decode_properties(data, 2, 5, p.PUBLISH)
    props, pos = decode_properties(data, 2, 6, p.PUBLISH)
    assert props == {"Topic-Alias": 7}
    assert pos == 6
