"""The encoder against hand-written hex, and encode -> decode round trips in both protocol versions."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mqhook.mqtt import packets as p
from mqhook.mqtt.codec import Decoder
from mqhook.mqtt.encode import V3_DISCONNECT, encode, encode_publish


def h(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


def fields(obj: Any) -> Any:
    """A packet as nested plain data, for equality checks."""
    if isinstance(obj, list | tuple):
        return [fields(item) for item in obj]
    if hasattr(obj, "__slots__"):
        slots = [name for cls in type(obj).__mro__ for name in getattr(cls, "__slots__", ())]
        return (type(obj).__name__, {name: fields(getattr(obj, name)) for name in slots})
    if isinstance(obj, dict):
        return {key: fields(value) for key, value in obj.items()}
    return obj


WILL = p.Will("w/t", b"bye", 1, True)
WILL_V5 = p.Will("w/t", b"bye", 1, True, {"Will-Delay-Interval": 2})

HEX_CASES: list[tuple[int, p.Packet, str]] = [
    # CONNECT
    (4, p.Connect("cid"), "10 0f 00 04 4d 51 54 54 04 02 00 3c 00 03 63 69 64"),
    (3, p.Connect("cid", 3, "MQIsdp"), "10 11 00 06 4d 51 49 73 64 70 03 02 00 3c 00 03 63 69 64"),
    (5, p.Connect("cid", 5), "10 10 00 04 4d 51 54 54 05 02 00 3c 00 00 03 63 69 64"),
    (4, p.Connect("c", 4, "MQTT", False, 0), "10 0d 00 04 4d 51 54 54 04 00 00 00 00 01 63"),
    (
        4,
        p.Connect("c", 4, keepalive=10, will=WILL, username="u", password=b"pw"),
        "10 1e 00 04 4d 51 54 54 04 ee 00 0a 00 01 63 00 03 77 2f 74 00 03 62 79 65 00 01 75 00 02 70 77",
    ),
    (
        5,
        p.Connect(
            "c", 5, keepalive=10, will=WILL_V5, username="u", password=b"pw", properties={"Session-Expiry-Interval": 30}
        ),
        "10 2a 00 04 4d 51 54 54 05 ee 00 0a 05 11 00 00 00 1e 00 01 63"
        " 05 18 00 00 00 02 00 03 77 2f 74 00 03 62 79 65 00 01 75 00 02 70 77",
    ),
    (5, p.Connect("cid", 5, password=b"pw"), "10 14 00 04 4d 51 54 54 05 42 00 3c 00 00 03 63 69 64 00 02 70 77"),
    # CONNACK: 3.1.1 return codes, Session Present cleared on failure
    (4, p.Connack(True, 0), "20 02 01 00"),
    (4, p.Connack(True, 0x86), "20 02 00 04"),
    (4, p.Connack(False, 0x87), "20 02 00 05"),
    (4, p.Connack(False, 0x84), "20 02 00 01"),
    (4, p.Connack(False, 0x85), "20 02 00 02"),
    (4, p.Connack(False, 0x88), "20 02 00 03"),
    (4, p.Connack(False, 0x89), "20 02 00 03"),
    (4, p.Connack(False, 0x80), "20 02 00 03"),
    (3, p.Connack(True, 0), "20 02 00 00"),
    (5, p.Connack(True, 0), "20 03 01 00 00"),
    (5, p.Connack(True, 0x87), "20 03 00 87 00"),
    (5, p.Connack(True, 0, {"Topic-Alias-Maximum": 10, "Maximum-QoS": 1}), "20 08 01 00 05 22 00 0a 24 01"),
    # PUBLISH
    (4, p.Publish("a/b", b"hello"), "30 0a 00 03 61 2f 62 68 65 6c 6c 6f"),
    (5, p.Publish("a/b", b"hello"), "30 0b 00 03 61 2f 62 00 68 65 6c 6c 6f"),
    (4, p.Publish("a/b", b"", 0, True), "31 05 00 03 61 2f 62"),
    (4, p.Publish("a/b", b"hello", 2, True, True, 65535), "3d 0c 00 03 61 2f 62 ff ff 68 65 6c 6c 6f"),
    (
        5,
        p.Publish("a/b", b"hello", 1, True, True, 7, {"Message-Expiry-Interval": 60}),
        "3b 12 00 03 61 2f 62 00 07 05 02 00 00 00 3c 68 65 6c 6c 6f",
    ),
    (5, p.Publish("", b"x", 0, properties={"Topic-Alias": 5}), "30 07 00 00 03 23 00 05 78"),
    # acks
    (4, p.Puback(1), "40 02 00 01"),
    (4, p.Puback(1, 0x10), "40 02 00 01"),
    (4, p.Pubrec(2), "50 02 00 02"),
    (4, p.Pubrel(3), "62 02 00 03"),
    (4, p.Pubcomp(4), "70 02 00 04"),
    (5, p.Puback(1), "40 02 00 01"),
    (5, p.Puback(1, 0x10), "40 03 00 01 10"),
    (5, p.Pubrel(1, 0x92, {"Reason-String": "x"}), "62 08 00 01 92 04 1f 00 01 78"),
    (5, p.Pubcomp(1, 0, {"User-Property": [("k", "")]}), "70 0a 00 01 00 06 26 00 01 6b 00 00"),
    # subscribe family
    (
        4,
        p.Subscribe(2, [p.Subscription("a"), p.Subscription("a/+", 2, True, True, 1)]),
        "82 0c 00 02 00 01 61 00 00 03 61 2f 2b 02",
    ),
    (
        5,
        p.Subscribe(1, [p.Subscription("a/#", 2, True, True, 2)], {"Subscription-Identifier": 7}),
        "82 0b 00 01 02 0b 07 00 03 61 2f 23 2e",
    ),
    (4, p.Suback(1, [0, 1, 0x87, 0x80]), "90 06 00 01 00 01 80 80"),
    (5, p.Suback(1, [0, 1, 0x87, 0x80]), "90 07 00 01 00 00 01 87 80"),
    (4, p.Unsubscribe(2, ["a/b"]), "a2 07 00 02 00 03 61 2f 62"),
    (5, p.Unsubscribe(2, ["a/b"]), "a2 08 00 02 00 00 03 61 2f 62"),
    (4, p.Unsuback(5, [0]), "b0 02 00 05"),
    (5, p.Unsuback(5, [0, 0x11]), "b0 05 00 05 00 00 11"),
    # ping, disconnect, auth
    (4, p.Pingreq(), "c0 00"),
    (5, p.Pingreq(), "c0 00"),
    (4, p.Pingresp(), "d0 00"),
    (5, p.Pingresp(), "d0 00"),
    (4, p.Disconnect(), ""),
    (3, p.Disconnect(0x8E), ""),
    (5, p.Disconnect(), "e0 00"),
    (5, p.Disconnect(0x8E), "e0 01 8e"),
    (5, p.Disconnect(0, {"Session-Expiry-Interval": 0}), "e0 07 00 05 11 00 00 00 00"),
    (5, p.Auth(), "f0 00"),
    (5, p.Auth(0x18), "f0 02 18 00"),
    (5, p.Auth(0x18, {"Authentication-Method": "m1"}), "f0 07 18 05 15 00 02 6d 31"),
]


@pytest.mark.parametrize(("level", "packet", "expected"), HEX_CASES, ids=lambda v: getattr(v, "__name__", None))
def test_encode_hex(level: int, packet: p.Packet, expected: str) -> None:
    assert encode(packet, level) == h(expected)


def test_v3_client_disconnect_constant() -> None:
    assert h("e0 00") == V3_DISCONNECT


def test_auth_does_not_exist_before_v5() -> None:
    with pytest.raises(ValueError, match="AUTH does not exist in protocol level 4"):
        encode(p.Auth(), 4)


def test_encode_publish_fast_path() -> None:
    payload = bytes(range(64))
    assert encode_publish("a/b", payload, 0, False, False, None, None, 4) == h("30 45 00 03 61 2f 62") + payload
    assert encode_publish("a/b", payload, 0, False, False, None, {}, 5) == h("30 46 00 03 61 2f 62 00") + payload
    assert encode_publish("a/b", payload, 1, False, False, 9, None, 5) == h("32 48 00 03 61 2f 62 00 09 00") + payload
    big = b"\xaa" * 200
    assert encode_publish("a/b", big, 0, False, False, None, None, 4) == h("30 cd 01 00 03 61 2f 62") + big
    huge = b"\xbb" * 20000
    assert encode_publish("a/b", huge, 0, False, False, None, None, 4) == h("30 a5 9c 01 00 03 61 2f 62") + huge


@pytest.mark.parametrize("packet_id", [None, 0])
def test_encode_publish_needs_a_packet_id_for_qos_1(packet_id: int | None) -> None:
    with pytest.raises(ValueError, match="PUBLISH QoS 1 needs a packet identifier"):
        encode_publish("a", b"", 1, False, False, packet_id, None, 4)


def test_encode_publish_topic_too_long() -> None:
    with pytest.raises(ValueError, match="topic name of 65536 bytes exceeds 65535"):
        encode_publish("x" * 65536, b"", 0, False, False, None, None, 4)


# ---------------------------------------------------------------- round trips

CONNECTS = {3: p.Connect("c", 3, "MQIsdp"), 4: p.Connect("c", 4), 5: p.Connect("c", 5)}


def _client_packets(level: int) -> list[p.Packet]:
    """Packets a client sends, as they decode in ``level`` (3.1.1 drops what it cannot carry)."""
    v5 = level == 5
    props: dict[str, Any] = {"User-Property": [("a", "b"), ("a", "c")]} if v5 else {}
    reason = 0x10 if v5 else 0
    return [
        p.Connect(
            "client-1",
            level,
            "MQIsdp" if level == 3 else "MQTT",
            False,
            300,
            p.Will("w", b"\x00\x01", 2, False, {"Message-Expiry-Interval": 5} if v5 else {}),
            "user",
            b"secret",
            {"Session-Expiry-Interval": 60, "Receive-Maximum": 20} if v5 else {},
        ),
        p.Publish("a/b/c", b"payload", 0, False, False, None, props),
        p.Publish("t", b"", 1, True, True, 1, {"Subscription-Identifier": [3, 4]} if v5 else {}),
        p.Publish("é/ü", b"x" * 300, 2, False, False, 65535),
        p.Puback(1, reason, props),
        p.Pubrec(2, reason),
        p.Pubrel(3, 0x92 if v5 else 0, {"Reason-String": "gone"} if v5 else {}),
        p.Pubcomp(4),
        p.Subscribe(5, [p.Subscription("a/#", 1, v5, v5, 2 if v5 else 0), p.Subscription("+", 2)], props),
        p.Unsubscribe(6, ["a/#", "+"], props),
        p.Pingreq(),
        *(
            [p.Auth(0x19, {"Authentication-Method": "m", "Authentication-Data": b"d"}), p.Disconnect(4, props)]
            if v5
            else []
        ),
    ]


def _server_packets(level: int) -> list[p.Packet]:
    """Packets a server sends, as they decode in ``level``."""
    v5 = level == 5
    return [
        p.Connack(level != 3, 0, {"Assigned-Client-Identifier": "x", "Retain-Available": 0} if v5 else {}),
        p.Connack(False, 0x87),
        p.Publish("a", b"b", 1, False, False, 10, {"Topic-Alias": 3} if v5 else {}),
        p.Suback(7, [0, 1, 2, 0x80] + ([0x87, 0x8F] if v5 else []), {"Reason-String": "r"} if v5 else {}),
        p.Unsuback(8, [0, 0x11] if v5 else []),
        p.Pingresp(),
        *([p.Disconnect(0x8E, {"Server-Reference": "elsewhere"}), p.Auth(0x18)] if v5 else []),
    ]


@pytest.mark.parametrize("level", [3, 4, 5])
def test_client_packets_round_trip(level: int) -> None:
    packets = [CONNECTS[level], *_client_packets(level)]
    stream = b"".join(encode(packet, level) for packet in packets)
    decoder = Decoder()
    decoded = [packet for i in range(len(stream)) for packet in decoder.feed(stream[i : i + 1])]
    assert decoder.protocol_level == level
    assert fields(decoded) == fields(packets)


@pytest.mark.parametrize("level", [3, 4, 5])
def test_server_packets_round_trip(level: int) -> None:
    packets = _server_packets(level)
    stream = b"".join(encode(packet, level) for packet in packets)
    decoded = Decoder(protocol_level=level).feed(stream)
    assert fields(decoded) == fields(packets)


# ---------------------------------------------------------------- property-based round trip

_text = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=20)
_topic = st.text(st.characters(codec="utf-8", exclude_characters="\x00+#"), min_size=1, max_size=30)
_pairs = st.lists(st.tuples(_text, _text), min_size=1, max_size=3)  # an empty list is not on the wire
_publish_props = st.fixed_dictionaries(
    {},
    optional={
        "Payload-Format-Indicator": st.integers(0, 1),
        "Message-Expiry-Interval": st.integers(0, 2**32 - 1),
        "Content-Type": _text,
        "Response-Topic": _topic,
        "Correlation-Data": st.binary(max_size=20),
        "Subscription-Identifier": st.lists(st.integers(1, 268435455), min_size=1, max_size=3),
        "Topic-Alias": st.integers(1, 65535),
        "User-Property": _pairs,
    },
)
_subscribe_props = st.fixed_dictionaries(
    {}, optional={"Subscription-Identifier": st.integers(1, 268435455), "User-Property": _pairs}
)


@st.composite
def _publish(draw: st.DrawFn, level: int) -> p.Publish:
    qos = draw(st.integers(0, 2))
    return p.Publish(
        draw(_topic),
        draw(st.binary(max_size=400)),
        qos,
        draw(st.booleans()),
        draw(st.booleans()) if qos else False,
        draw(st.integers(1, 65535)) if qos else None,
        draw(_publish_props) if level == 5 else {},
    )


@st.composite
def _subscribe(draw: st.DrawFn, level: int) -> p.Subscribe:
    v5 = level == 5
    subscriptions = [
        p.Subscription(
            draw(_text),
            draw(st.integers(0, 2)),
            draw(st.booleans()) if v5 else False,
            draw(st.booleans()) if v5 else False,
            draw(st.integers(0, 2)) if v5 else 0,
        )
        for _ in range(draw(st.integers(1, 4)))
    ]
    return p.Subscribe(draw(st.integers(1, 65535)), subscriptions, draw(_subscribe_props) if v5 else {})


@st.composite
def _session(draw: st.DrawFn) -> tuple[int, list[p.Packet], list[int]]:
    level = draw(st.sampled_from([3, 4, 5]))
    packets = draw(st.lists(st.one_of(_publish(level), _subscribe(level)), min_size=1, max_size=8))
    cuts = draw(st.lists(st.integers(0, 4000), max_size=10))
    return level, packets, cuts


@settings(max_examples=300, deadline=None)
@given(_session())
def test_random_publish_and_subscribe_round_trip_in_random_chunks(
    session: tuple[int, list[p.Packet], list[int]],
) -> None:
    level, packets, cuts = session
    stream = encode(CONNECTS[level], level) + b"".join(encode(packet, level) for packet in packets)
    bounds = [0, *sorted(cut % (len(stream) + 1) for cut in cuts), len(stream)]
    decoder = Decoder()
    decoded: list[p.Packet] = []
    for start, stop in itertools.pairwise(bounds):
        decoded.extend(decoder.feed(stream[start:stop]))
    assert fields(decoded[1:]) == fields(packets)


def test_topic_field_cache_stays_bounded() -> None:
    from mqhook.mqtt import encode as encode_module

    for i in range(encode_module._TOPIC_FIELDS_MAX + 10):
        topic = f"t/{i}"
        assert encode_publish(topic, b"", 0, False, False, None, None, 4)[4:] == topic.encode()
    assert len(encode_module._TOPIC_FIELDS) <= encode_module._TOPIC_FIELDS_MAX
