"""The decoder against hand-written hex: every packet type, odd chunkings, every malformed case."""

from __future__ import annotations

import random
import re
from typing import Any

import pytest

from mqhook.errors import MalformedPacket, ProtocolError
from mqhook.mqtt import packets as p
from mqhook.mqtt.codec import Decoder
from mqhook.mqtt.encode import encode
from mqhook.mqtt.wire import encode_varint


def h(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


CONNECT_V3 = h("10 11 00 06 4d 51 49 73 64 70 03 02 00 3c 00 03 63 69 64")
CONNECT_V4 = h("10 0f 00 04 4d 51 54 54 04 02 00 3c 00 03 63 69 64")
CONNECT_V5 = h("10 10 00 04 4d 51 54 54 05 02 00 3c 00 00 03 63 69 64")
CONNECTS = {3: CONNECT_V3, 4: CONNECT_V4, 5: CONNECT_V5}
PUBLISH_V4 = h("30 0a 00 03 61 2f 62 68 65 6c 6c 6f")
PUBLISH_V5 = h("30 0b 00 03 61 2f 62 00 68 65 6c 6c 6f")


def connected(level: int, max_packet_size: int = 268435455) -> Decoder:
    decoder = Decoder(max_packet_size)
    assert decoder.feed(CONNECTS[level])[0].type == p.CONNECT
    return decoder


def one(level: int, data: str) -> Any:
    """Decode exactly one packet after a CONNECT of ``level``."""
    packets = connected(level).feed(h(data))
    assert len(packets) == 1
    return packets[0]


def client(level: int, data: str) -> Any:
    """Decode exactly one server-to-client packet (a client decoder knows its level up front)."""
    packets = Decoder(protocol_level=level).feed(h(data))
    assert len(packets) == 1
    return packets[0]


def fails(level: int | None, data: str, code: int, fragment: str) -> None:
    decoder = Decoder() if level is None else connected(level)
    with pytest.raises(ProtocolError) as info:
        decoder.feed(h(data))
    assert info.value.reason_code == code
    assert fragment in str(info.value)
    if code == 0x81:
        assert isinstance(info.value, MalformedPacket)


# ---------------------------------------------------------------- CONNECT


@pytest.mark.parametrize(("level", "name"), [(3, "MQIsdp"), (4, "MQTT"), (5, "MQTT")])
def test_minimal_connect(level: int, name: str) -> None:
    decoder = Decoder()
    assert decoder.protocol_level is None
    [packet] = decoder.feed(CONNECTS[level])
    assert isinstance(packet, p.Connect)
    assert decoder.protocol_level == level
    assert (packet.proto_name, packet.proto_level, packet.client_id) == (name, level, "cid")
    assert (packet.clean_start, packet.keepalive, packet.will, packet.username, packet.password) == (
        True,
        60,
        None,
        None,
        None,
    )
    assert packet.properties == {}


def test_full_connect_v4() -> None:
    data = "10 1e 00 04 4d 51 54 54 04 ee 00 0a 00 01 63 00 03 77 2f 74 00 03 62 79 65 00 01 75 00 02 70 77"
    [packet] = Decoder().feed(h(data))
    assert isinstance(packet, p.Connect)
    assert (packet.clean_start, packet.keepalive, packet.client_id) == (True, 10, "c")
    assert (packet.username, packet.password) == ("u", b"pw")
    will = packet.will
    assert will is not None
    assert (will.topic, will.payload, will.qos, will.retain, will.properties) == ("w/t", b"bye", 1, True, {})


def test_full_connect_v5() -> None:
    data = (
        "10 2a 00 04 4d 51 54 54 05 ee 00 0a 05 11 00 00 00 1e 00 01 63"
        " 05 18 00 00 00 02 00 03 77 2f 74 00 03 62 79 65 00 01 75 00 02 70 77"
    )
    [packet] = Decoder().feed(h(data))
    assert isinstance(packet, p.Connect)
    assert packet.properties == {"Session-Expiry-Interval": 30}
    assert packet.will is not None
    assert packet.will.properties == {"Will-Delay-Interval": 2}
    assert (packet.will.topic, packet.will.payload, packet.username, packet.password) == ("w/t", b"bye", "u", b"pw")


def test_v5_password_without_user_name_is_allowed() -> None:
    [packet] = Decoder().feed(h("10 14 00 04 4d 51 54 54 05 42 00 3c 00 00 03 63 69 64 00 02 70 77"))
    assert isinstance(packet, p.Connect)
    assert (packet.username, packet.password) == (None, b"pw")


def test_second_connect_is_decoded_and_keeps_the_level() -> None:
    decoder = Decoder()
    packets = decoder.feed(CONNECT_V4 + CONNECT_V5)
    assert [packet.type for packet in packets] == [p.CONNECT, p.CONNECT]
    assert decoder.protocol_level == 4


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ("10 0f 00 04 4d 51 54 54 06 02 00 3c 00 03 63 69 64", "unsupported protocol 'MQTT' level 6"),
        ("10 0f 00 04 4d 51 54 54 03 02 00 3c 00 03 63 69 64", "unsupported protocol 'MQTT' level 3"),
        ("10 11 00 06 4d 51 49 73 64 70 04 02 00 3c 00 03 63 69 64", "unsupported protocol 'MQIsdp' level 4"),
        ("10 0f 00 04 48 54 54 50 04 02 00 3c 00 03 63 69 64", "unsupported protocol 'HTTP' level 4"),
    ],
)
def test_unsupported_protocol(data: str, fragment: str) -> None:
    decoder = Decoder()
    with pytest.raises(ProtocolError) as info:
        decoder.feed(h(data))
    assert info.value.reason_code == 0x84
    assert fragment in str(info.value)
    assert decoder.protocol_level is None


@pytest.mark.parametrize(
    ("flags", "fragment"),
    [
        ("03", "CONNECT reserved flag is 1, must be 0 [MQTT-3.1.2-3]"),
        ("0a", "CONNECT Will QoS is 1 but the Will Flag is 0 [MQTT-3.1.2-11]"),
        ("22", "CONNECT Will Retain is 1 but the Will Flag is 0 [MQTT-3.1.2-13]"),
        ("1e", "CONNECT Will QoS 3 is invalid [MQTT-3.1.2-12]"),
        ("42", "CONNECT Password Flag is 1 but the User Name Flag is 0 [MQTT-3.1.2-22]"),
    ],
)
def test_bad_connect_flags(flags: str, fragment: str) -> None:
    fails(None, f"10 0f 00 04 4d 51 54 54 04 {flags} 00 3c 00 03 63 69 64", 0x81, fragment)


@pytest.mark.parametrize(
    ("data", "code", "fragment"),
    [
        ("10 10 00 04 4d 51 54 54 04 02 00 3c 00 03 63 69 64 ff", 0x81, "CONNECT has 1 unexpected bytes"),
        ("10 0f 00 04 4d 51 54 54 04 02 00 3c 00 05 63 69 64", 0x81, "CONNECT client identifier: length 5 overruns"),
        ("10 0f 00 04 4d 51 54 54 04 02 00 3c 00 03 63 ff 64", 0x81, "client identifier is not valid UTF-8"),
        ("10 0f 00 04 4d 51 54 54 04 02 00 3c 00 03 63 00 64", 0x81, "contains U+0000 [MQTT-1.5.4-2]"),
        ("10 0a 00 04 4d 51 54 54 04 02 00 3c", 0x81, "CONNECT client identifier: truncated"),
        ("10 07 00 04 4d 51 54 54 04", 0x81, "CONNECT flags: truncated"),
        ("10 14 00 04 4d 51 54 54 04 06 00 3c 00 01 63 00 03 61 2f 23 00 00", 0x90, "wildcard"),
        ("10 12 00 04 4d 51 54 54 05 02 00 3c 04 16 00 01 78 00 01 63", 0x82, "no Authentication-Method"),
        ("10 10 00 04 4d 51 54 54 05 02 00 3c 03 23 00 01 00 00", 0x81, "Topic-Alias (0x23) is not allowed in CONNECT"),
    ],
)
def test_bad_connect(data: str, code: int, fragment: str) -> None:
    fails(None, data, code, fragment)


@pytest.mark.parametrize("data", ["30", "c0 00", "82 08 00 01 00 03 61 2f 23 01", "20 02 00 00"])
def test_first_packet_must_be_connect(data: str) -> None:
    fails(None, data, 0x82, "must be CONNECT [MQTT-3.1.0-1]")


# ---------------------------------------------------------------- PUBLISH


@pytest.mark.parametrize(
    ("level", "data", "expected"),
    [
        (4, "30 0a 00 03 61 2f 62 68 65 6c 6c 6f", ("a/b", b"hello", 0, False, False, None)),
        (3, "30 0a 00 03 61 2f 62 68 65 6c 6c 6f", ("a/b", b"hello", 0, False, False, None)),
        (4, "31 05 00 03 61 2f 62", ("a/b", b"", 0, True, False, None)),
        (4, "32 0c 00 03 61 2f 62 00 07 68 65 6c 6c 6f", ("a/b", b"hello", 1, False, False, 7)),
        (4, "3d 0c 00 03 61 2f 62 ff ff 68 65 6c 6c 6f", ("a/b", b"hello", 2, True, True, 65535)),
        (5, "30 0b 00 03 61 2f 62 00 68 65 6c 6c 6f", ("a/b", b"hello", 0, False, False, None)),
        (5, "34 08 00 02 c3 a9 00 01 00 ff", ("é", b"\xff", 2, False, False, 1)),
    ],
)
def test_publish(level: int, data: str, expected: tuple[Any, ...]) -> None:
    packet = one(level, data)
    assert isinstance(packet, p.Publish)
    assert (packet.topic, packet.payload, packet.qos, packet.retain, packet.dup, packet.packet_id) == expected
    assert type(packet.payload) is bytes
    assert packet.properties == {}


def test_publish_v5_properties() -> None:
    data = "32 1b 00 03 61 2f 62 00 01 11 02 00 00 00 3c 0b 01 0b 81 01 26 00 01 6b 00 01 76 68 69"
    packet = one(5, data)
    assert isinstance(packet, p.Publish)
    assert (packet.topic, packet.packet_id, packet.payload) == ("a/b", 1, b"hi")
    assert packet.properties == {
        "Message-Expiry-Interval": 60,
        "Subscription-Identifier": [1, 129],
        "User-Property": [("k", "v")],
    }


def test_publish_v5_empty_topic_with_alias() -> None:
    packet = one(5, "30 07 00 00 03 23 00 05 78")
    assert isinstance(packet, p.Publish)
    assert (packet.topic, packet.payload, packet.properties) == ("", b"x", {"Topic-Alias": 5})


@pytest.mark.parametrize(
    ("level", "data", "code", "fragment"),
    [
        (4, "36 0a 00 03 61 2f 62 68 65 6c 6c 6f", 0x81, "PUBLISH QoS 3 is invalid [MQTT-3.3.1-4]"),
        (5, "37 0a 00 03 61 2f 62 68 65 6c 6c 6f", 0x81, "PUBLISH QoS 3 is invalid [MQTT-3.3.1-4]"),
        (4, "30 0a 00 03 61 2f 23 68 65 6c 6c 6f", 0x90, "topic name 'a/#' contains a wildcard"),
        (4, "30 0a 00 03 61 2f 2b 68 65 6c 6c 6f", 0x90, "topic name 'a/+' contains a wildcard"),
        (4, "30 0a 00 03 61 00 62 68 65 6c 6c 6f", 0x81, "contains U+0000 [MQTT-1.5.4-2]"),
        (4, "30 0a 00 03 61 ff 62 68 65 6c 6c 6f", 0x81, "PUBLISH topic name is not valid UTF-8"),
        (4, "30 0a 00 03 ed a0 80 68 65 6c 6c 6f", 0x81, "PUBLISH topic name is not valid UTF-8"),
        (4, "32 0c 00 03 61 2f 62 00 00 68 65 6c 6c 6f", 0x81, "PUBLISH QoS 1 with packet identifier 0"),
        (4, "38 0a 00 03 61 2f 62 68 65 6c 6c 6f", 0x82, "PUBLISH QoS 0 with DUP flag set [MQTT-3.3.1-2]"),
        (4, "30 03 00 05 61", 0x81, "PUBLISH topic name overruns the packet by 4 bytes"),
        (4, "30 01 00", 0x81, "PUBLISH topic name: truncated"),
        (4, "32 06 00 03 61 2f 62 00", 0x81, "PUBLISH packet identifier: truncated"),
        (4, "30 03 00 00 78", 0x90, "topic name is empty"),
        (5, "30 04 00 00 00 78", 0x90, "topic name is empty"),
        (5, "30 05 00 03 61 2f 62", 0x81, "property length: variable byte integer truncated"),
        (5, "30 07 00 03 61 2f 62 09 00", 0x81, "property length 9 overruns the packet"),
        (5, "30 0b 00 03 61 2f 62 05 11 00 00 00 01", 0x81, "Session-Expiry-Interval (0x11) is not allowed in PUBLISH"),
        (5, "30 09 00 03 61 2f 62 03 23 00 00", 0x94, "Topic-Alias must not be 0"),
    ],
)
def test_bad_publish(level: int, data: str, code: int, fragment: str) -> None:
    fails(level, data, code, fragment)


def test_publish_with_two_and_three_byte_remaining_length() -> None:
    decoder = connected(4)
    small = h("30 cd 01 00 03 61 2f 62") + b"\xaa" * 200
    large = h("30 a5 9c 01 00 03 61 2f 62") + b"\xbb" * 20000
    first, second = decoder.feed(small + large)
    assert isinstance(first, p.Publish) and isinstance(second, p.Publish)
    assert first.payload == b"\xaa" * 200
    assert second.payload == b"\xbb" * 20000


# ---------------------------------------------------------------- fixed header


def test_max_packet_size_is_checked_from_the_fixed_header() -> None:
    decoder = connected(4, max_packet_size=1000)
    assert decoder.feed(h("30 ff")) == []
    assert decoder.feed(h("ff")) == []
    with pytest.raises(ProtocolError) as info:
        decoder.feed(h("03"))
    assert info.value.reason_code == 0x95
    assert str(info.value) == "packet of 65539 bytes exceeds max_packet_size 1000"


def test_max_packet_size_boundary() -> None:
    decoder = connected(4, max_packet_size=17)
    assert len(decoder.feed(PUBLISH_V4)) == 1
    assert len(decoder.feed(h("30 0f 00 03 61 2f 62") + b"x" * 10)) == 1  # 17 bytes: allowed
    with pytest.raises(ProtocolError, match="packet of 18 bytes exceeds max_packet_size 17"):
        decoder.feed(h("30 10"))


def test_max_packet_size_applies_to_connect() -> None:
    with pytest.raises(ProtocolError, match="packet of 17 bytes exceeds max_packet_size 10"):
        Decoder(10).feed(CONNECT_V4[:2])


@pytest.mark.parametrize("chunk", [1, 6])
def test_remaining_length_longer_than_four_bytes(chunk: int) -> None:
    decoder = connected(4)
    data = h("30 80 80 80 80 01")
    with pytest.raises(MalformedPacket, match=r"remaining length is longer than 4 bytes \[MQTT-1.5.5-1\]"):
        for i in range(0, len(data), chunk):
            decoder.feed(data[i : i + chunk])


@pytest.mark.parametrize(
    ("level", "data", "fragment"),
    [
        (4, "41 02 00 01", "PUBACK fixed header flags are 0x1, must be 0x0 [MQTT-2.2.2-2]"),
        (4, "60 02 00 01", "PUBREL fixed header flags are 0x0, must be 0x2 [MQTT-2.2.2-2]"),
        (4, "80 08 00 01 00 03 61 2f 23 01", "SUBSCRIBE fixed header flags are 0x0, must be 0x2"),
        (5, "a0 07 00 02 00 03 61 2f 62", "UNSUBSCRIBE fixed header flags are 0x0, must be 0x2"),
        (4, "c1 00", "PINGREQ fixed header flags are 0x1, must be 0x0"),
        (5, "e8 00", "DISCONNECT fixed header flags are 0x8, must be 0x0"),
        (4, "12 0f 00 04 4d 51 54 54 04 02 00 3c 00 03 63 69 64", "CONNECT fixed header flags are 0x2"),
        (4, "00 00", "packet type 0 is reserved"),
        (4, "f0 00", "packet type 15 (AUTH) does not exist in protocol level 4"),
        (4, "c0 01 00", "PINGREQ has 1 unexpected bytes"),
        (4, "e0 01 00", "DISCONNECT has 1 unexpected bytes"),
    ],
)
def test_bad_fixed_header_or_empty_packet(level: int, data: str, fragment: str) -> None:
    fails(level, data, 0x81, fragment)


# ---------------------------------------------------------------- acks, ping, disconnect, auth


@pytest.mark.parametrize("level", [3, 4, 5])
@pytest.mark.parametrize(
    ("data", "cls"),
    [("40 02 00 01", p.Puback), ("50 02 00 01", p.Pubrec), ("62 02 00 01", p.Pubrel), ("70 02 00 01", p.Pubcomp)],
)
def test_short_acks(level: int, data: str, cls: type) -> None:
    packet = one(level, data)
    assert type(packet) is cls
    assert (packet.packet_id, packet.reason_code, packet.properties) == (1, 0, {})


@pytest.mark.parametrize(
    ("data", "reason", "props"),
    [
        ("40 03 00 01 10", 0x10, {}),
        ("50 04 00 01 80 00", 0x80, {}),
        ("62 08 00 01 92 04 1f 00 01 78", 0x92, {"Reason-String": "x"}),
        ("70 0a 00 01 00 06 26 00 01 6b 00 00", 0, {"User-Property": [("k", "")]}),
    ],
)
def test_v5_acks_with_reason_and_properties(data: str, reason: int, props: dict[str, Any]) -> None:
    packet = one(5, data)
    assert (packet.packet_id, packet.reason_code, packet.properties) == (1, reason, props)


@pytest.mark.parametrize(
    ("level", "data", "fragment"),
    [
        (4, "40 03 00 01 00", "PUBACK has 1 unexpected bytes"),
        (4, "50 02 00 00", "PUBREC with packet identifier 0 [MQTT-2.2.1-3]"),
        (5, "70 01 00", "PUBCOMP packet identifier: truncated"),
        (5, "40 05 00 01 10 00 ff", "PUBACK has 1 unexpected bytes"),
        (5, "40 06 00 01 00 02 01 01", "Payload-Format-Indicator (0x01) is not allowed in PUBACK"),
    ],
)
def test_bad_acks(level: int, data: str, fragment: str) -> None:
    fails(level, data, 0x81, fragment)


def test_pingreq_and_disconnect_v4() -> None:
    packets = connected(4).feed(h("c0 00 e0 00"))
    assert [type(packet) for packet in packets] == [p.Pingreq, p.Disconnect]
    assert (packets[1].reason_code, packets[1].properties) == (0, {})


@pytest.mark.parametrize(
    ("data", "reason", "props"),
    [
        ("e0 00", 0, {}),
        ("e0 01 04", 4, {}),
        ("e0 02 8e 00", 0x8E, {}),
        ("e0 07 00 05 11 00 00 00 00", 0, {"Session-Expiry-Interval": 0}),
    ],
)
def test_disconnect_v5(data: str, reason: int, props: dict[str, Any]) -> None:
    packet = one(5, data)
    assert isinstance(packet, p.Disconnect)
    assert (packet.reason_code, packet.properties) == (reason, props)


@pytest.mark.parametrize(
    ("data", "reason", "props"),
    [("f0 00", 0, {}), ("f0 07 18 05 15 00 02 6d 31", 0x18, {"Authentication-Method": "m1"})],
)
def test_auth(data: str, reason: int, props: dict[str, Any]) -> None:
    packet = one(5, data)
    assert isinstance(packet, p.Auth)
    assert (packet.reason_code, packet.properties) == (reason, props)


# ---------------------------------------------------------------- subscribe family


def _subs(packet: Any) -> list[tuple[Any, ...]]:
    return [(s.topic_filter, s.qos, s.no_local, s.retain_as_published, s.retain_handling) for s in packet.subscriptions]


def test_subscribe_v4() -> None:
    packet = one(4, "82 0c 00 02 00 01 61 00 00 03 61 2f 2b 02")
    assert isinstance(packet, p.Subscribe)
    assert packet.packet_id == 2
    assert _subs(packet) == [("a", 0, False, False, 0), ("a/+", 2, False, False, 0)]
    assert packet.properties == {}


def test_subscribe_v5_options_and_identifier() -> None:
    packet = one(5, "82 0b 00 01 02 0b 07 00 03 61 2f 23 2e")
    assert isinstance(packet, p.Subscribe)
    assert packet.properties == {"Subscription-Identifier": 7}
    assert _subs(packet) == [("a/#", 2, True, True, 2)]


def test_subscribe_filters_are_not_validated_by_the_decoder() -> None:
    packet = one(4, "82 0a 00 01 00 05 61 2f 23 2f 62 01")
    assert _subs(packet) == [("a/#/b", 1, False, False, 0)]


@pytest.mark.parametrize(
    ("level", "data", "code", "fragment"),
    [
        (4, "82 08 00 01 00 03 61 2f 23 04", 0x81, "SUBSCRIBE options 0x04 for 'a/#'"),
        (4, "82 08 00 01 00 03 61 2f 23 03", 0x81, "[MQTT-3.8.3-4]"),
        (5, "82 09 00 01 00 00 03 61 2f 23 40", 0x81, "have reserved bits set [MQTT-3.8.3-5]"),
        (5, "82 09 00 01 00 00 03 61 2f 23 03", 0x82, "SUBSCRIBE QoS 3 for 'a/#' is invalid"),
        (5, "82 09 00 01 00 00 03 61 2f 23 30", 0x82, "SUBSCRIBE Retain Handling 3 for 'a/#' is invalid"),
        (4, "82 02 00 01", 0x82, "SUBSCRIBE has no topic filters [MQTT-3.8.3-2]"),
        (5, "82 03 00 01 00", 0x82, "SUBSCRIBE has no topic filters [MQTT-3.8.3-2]"),
        (4, "82 07 00 01 00 03 61 2f 23", 0x81, "SUBSCRIBE topic filter 'a/#' has no subscription options"),
        (4, "82 08 00 00 00 03 61 2f 23 01", 0x81, "SUBSCRIBE with packet identifier 0 [MQTT-2.2.1-3]"),
        (4, "82 08 00 01 00 03 61 00 23 01", 0x81, "SUBSCRIBE topic filter 'a\\x00#' contains U+0000"),
        (5, "82 0b 00 01 02 0b 00 00 03 61 2f 23 00", 0x82, "Subscription-Identifier must not be 0"),
        (4, "a2 02 00 02", 0x82, "UNSUBSCRIBE has no topic filters [MQTT-3.10.3-2]"),
        (4, "a2 06 00 02 00 03 61 2f", 0x81, "UNSUBSCRIBE topic filter: length 3 overruns"),
        (5, "a2 06 00 00 00 00 01 61", 0x81, "UNSUBSCRIBE with packet identifier 0"),
    ],
)
def test_bad_subscribe_family(level: int, data: str, code: int, fragment: str) -> None:
    fails(level, data, code, fragment)


def test_unsubscribe() -> None:
    packet = one(4, "a2 07 00 02 00 03 61 2f 62")
    assert isinstance(packet, p.Unsubscribe)
    assert (packet.packet_id, packet.topic_filters, packet.properties) == (2, ["a/b"], {})
    packet = one(5, "a2 0f 00 02 07 26 00 01 6b 00 01 76 00 03 61 2f 62")
    assert isinstance(packet, p.Unsubscribe)
    assert (packet.topic_filters, packet.properties) == (["a/b"], {"User-Property": [("k", "v")]})


# ---------------------------------------------------------------- server-to-client packets


@pytest.mark.parametrize(
    ("level", "data", "present", "code", "props"),
    [
        (4, "20 02 01 00", True, 0, {}),
        (4, "20 02 00 05", False, 0x87, {}),
        (4, "20 02 00 01", False, 0x84, {}),
        (3, "20 02 00 02", False, 0x85, {}),
        (5, "20 03 00 00 00", False, 0, {}),
        (5, "20 03 00 87 00", False, 0x87, {}),
        (5, "20 08 01 00 05 22 00 0a 24 01", True, 0, {"Topic-Alias-Maximum": 10, "Maximum-QoS": 1}),
    ],
)
def test_connack(level: int, data: str, present: bool, code: int, props: dict[str, Any]) -> None:
    packet = client(level, data)
    assert isinstance(packet, p.Connack)
    assert (packet.session_present, packet.reason_code, packet.properties) == (present, code, props)


@pytest.mark.parametrize(
    ("level", "data", "fragment"),
    [
        (4, "20 02 02 00", "CONNACK acknowledge flags 0x02 have reserved bits set [MQTT-3.2.2-1]"),
        (4, "20 02 00 06", "CONNACK return code 6 is reserved"),
        (4, "20 03 00 00 00", "CONNACK has 1 unexpected bytes"),
        (5, "20 01 00", "CONNACK reason code: truncated"),
    ],
)
def test_bad_connack(level: int, data: str, fragment: str) -> None:
    with pytest.raises(MalformedPacket, match=re.escape(fragment)):
        Decoder(protocol_level=level).feed(h(data))


def test_suback_unsuback_pingresp() -> None:
    suback = client(4, "90 05 00 01 00 01 80")
    assert isinstance(suback, p.Suback)
    assert (suback.packet_id, suback.reason_codes, suback.properties) == (1, [0, 1, 0x80], {})
    suback = client(5, "90 05 00 01 00 02 87")
    assert isinstance(suback, p.Suback)
    assert suback.reason_codes == [2, 0x87]
    unsuback = client(4, "b0 02 00 01")
    assert isinstance(unsuback, p.Unsuback)
    assert (unsuback.packet_id, unsuback.reason_codes) == (1, [])
    unsuback = client(5, "b0 05 00 01 00 00 11")
    assert isinstance(unsuback, p.Unsuback)
    assert unsuback.reason_codes == [0, 0x11]
    assert type(client(5, "d0 00")) is p.Pingresp
    with pytest.raises(MalformedPacket, match="UNSUBACK has 1 unexpected bytes"):
        Decoder(protocol_level=4).feed(h("b0 03 00 01 00"))


# ---------------------------------------------------------------- chunking and buffering

STREAM = (
    CONNECT_V4
    + PUBLISH_V4
    + h("32 0c 00 03 61 2f 62 00 07 68 65 6c 6c 6f")
    + h("82 0c 00 02 00 01 61 00 00 03 61 2f 2b 02")
    + h("30 cd 01 00 03 61 2f 62")
    + b"\xaa" * 200
    + h("c0 00")
    + h("e0 00")
)
STREAM_TYPES = [p.CONNECT, p.PUBLISH, p.PUBLISH, p.SUBSCRIBE, p.PUBLISH, p.PINGREQ, p.DISCONNECT]


def _decode_chunks(chunks: list[bytes]) -> list[Any]:
    decoder = Decoder()
    out: list[Any] = []
    for chunk in chunks:
        out.extend(decoder.feed(chunk))
    return out


def _check_stream(packets: list[Any]) -> None:
    assert [packet.type for packet in packets] == STREAM_TYPES
    assert packets[1].payload == b"hello"
    assert packets[2].packet_id == 7
    assert packets[4].payload == b"\xaa" * 200


def test_stream_in_one_chunk() -> None:
    _check_stream(_decode_chunks([STREAM]))


def test_stream_one_byte_at_a_time() -> None:
    _check_stream(_decode_chunks([STREAM[i : i + 1] for i in range(len(STREAM))]))


def test_stream_split_at_every_offset() -> None:
    for cut in range(1, len(STREAM)):
        _check_stream(_decode_chunks([STREAM[:cut], STREAM[cut:]]))


def test_split_inside_the_remaining_length() -> None:
    decoder = connected(4)
    data = h("30 cd 01 00 03 61 2f 62") + b"\xaa" * 200
    assert decoder.feed(data[:2]) == []  # "30 cd": the varint continues
    [packet] = decoder.feed(data[2:])
    assert packet.payload == b"\xaa" * 200


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_random_chunkings_and_input_types(kind: Any) -> None:
    rng = random.Random(1234)
    for _ in range(200):
        chunks, i = [], 0
        while i < len(STREAM):
            n = rng.randint(1, 40)
            chunks.append(kind(STREAM[i : i + n]))
            i += n
        _check_stream(_decode_chunks(chunks))


def test_caller_buffer_is_not_retained() -> None:
    """BufferedProtocol reuses its buffer: the decoder must copy what it keeps and release the view."""
    decoder = connected(4)
    area = bytearray(PUBLISH_V4[:7])
    assert decoder.feed(memoryview(area)) == []
    area[:] = b"\x00" * 7
    area += b"resizable"  # would raise BufferError if a view were still exported
    [packet] = decoder.feed(PUBLISH_V4[7:])
    assert (packet.topic, packet.payload) == ("a/b", b"hello")


def test_long_stream_in_large_chunks_keeps_only_the_unfinished_tail() -> None:
    decoder = connected(5)
    stream = PUBLISH_V5 * 20000
    out: list[Any] = []
    for i in range(0, len(stream), 100003):
        out.extend(decoder.feed(stream[i : i + 100003]))
        assert len(decoder._buf) < len(PUBLISH_V5)
    assert len(out) == 20000
    assert all(packet.payload == b"hello" for packet in out)


def test_large_packet_in_many_small_chunks() -> None:
    decoder = connected(4)
    payload = bytes(range(256)) * 4096  # 1 MiB: remaining length 1048581 = 85 80 40
    data = h("30 85 80 40 00 03 61 2f 62") + payload + PUBLISH_V4
    out: list[Any] = []
    for i in range(0, len(data), 1000):
        out.extend(decoder.feed(memoryview(data)[i : i + 1000]))
    assert [packet.payload for packet in out] == [payload, b"hello"]


def test_repeated_topics_share_one_str_and_the_cache_stays_bounded() -> None:
    from mqhook.mqtt import codec

    decoder = connected(4)
    first, second = decoder.feed(PUBLISH_V4 * 2)
    assert first.topic is second.topic
    stream = b"".join(b"\x30\x07\x00\x05" + f"{i:05d}".encode() for i in range(codec._TOPICS_MAX + 10))
    topics = [packet.topic for packet in decoder.feed(stream)]
    assert topics == [f"{i:05d}" for i in range(codec._TOPICS_MAX + 10)]
    assert len(codec._TOPICS) <= codec._TOPICS_MAX


def test_level_is_known_when_the_rest_of_connect_is_bad() -> None:
    """The broker answers a bad v5 CONNECT with a v5 CONNACK: the level is adopted before the body is checked."""
    decoder = Decoder()
    with pytest.raises(MalformedPacket):
        decoder.feed(h("10 10 00 04 4d 51 54 54 05 02 00 3c 03 23 00 01 00 00"))
    assert decoder.protocol_level == 5


# -- a server's first packet, and the packets before a fault --------------------------------------


def test_a_connect_over_max_connect_size_fails_as_soon_as_its_length_is_known() -> None:
    decoder = Decoder(1 << 20, max_connect_size=65536)
    head = b"\x10" + encode_varint(65536)  # CONNECT, remaining length 65536: 65540 bytes in all
    packets, fault = decoder.decode(head)  # no body yet: nothing is kept waiting for it
    assert packets == [] and fault is not None and fault.reason_code == 0x95
    assert "CONNECT of 65540 bytes exceeds max_connect_size 65536" in str(fault)
    assert decoder.decode(b"\x00" * 10) == ([], fault)  # unusable afterwards


def test_max_connect_size_is_only_for_the_first_packet() -> None:
    decoder = Decoder(1 << 20, max_connect_size=64)
    (connack_less,) = decoder.feed(CONNECT_V4)
    assert isinstance(connack_less, p.Connect)
    big = encode(p.Publish("t", b"x" * 1000, 0), 4)
    assert [type(x) for x in decoder.feed(big)] == [p.Publish]


def test_packets_before_a_fault_are_returned_with_it() -> None:
    decoder = connected(4)
    good = encode(p.Publish("t", b"first", 1, packet_id=1), 4) + encode(p.Pingreq(), 4)
    bad = h("30 80 80 80 80 01")  # a remaining length of five bytes
    packets, fault = decoder.decode(good + bad)
    assert [type(x) for x in packets] == [p.Publish, p.Pingreq] and packets[0].payload == b"first"
    assert isinstance(fault, MalformedPacket)
    with pytest.raises(MalformedPacket):
        decoder.feed(b"")  # feed raises the fault it ended with
