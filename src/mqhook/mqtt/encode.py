"""The MQTT encoder: packets in, bytes out, for 3.1 / 3.1.1 (levels 3, 4) and 5.0 (level 5).

``encode`` handles every packet type, server and client side. ``encode_publish``
is the fan-out fast path the broker calls once per subscriber. The encoder
trusts its input (it is built by mqhook itself); it raises ValueError only for
what cannot be put on the wire at all.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from functools import partial
from typing import Any

from mqhook.mqtt import packets as p
from mqhook.mqtt import reason as R
from mqhook.mqtt.properties import encode_properties
from mqhook.mqtt.reason import v3_connack_code
from mqhook.mqtt.wire import encode_bin, encode_str, encode_varint

# A 3.1.1 client's DISCONNECT; ``encode`` returns b"" for Disconnect below level 5
# because a 3.1.1 server never sends one (section 3.14).
V3_DISCONNECT = b"\xe0\x00"


def _u16(value: int) -> bytes:
    """A Two Byte Integer (section 1.5.2)."""
    return value.to_bytes(2, "big")


def _frame(first: int, *parts: bytes) -> bytes:
    """Fixed header (section 2.1) in front of the variable header and payload."""
    body = b"".join(parts)
    return bytes((first,)) + encode_varint(len(body)) + body


def _props(packet: Any, level: int) -> bytes:
    return encode_properties(packet.properties) if level == 5 else b""


# Topic name fields (length + UTF-8) by topic: fan-out encodes one topic for many
# subscribers. Bounded: emptied when full.
_TOPIC_FIELDS: dict[str, bytes] = {}
_TOPIC_FIELDS_MAX = 4096
_pack_u16 = struct.Struct(">H").pack
_pack_head = struct.Struct(">BB").pack


def _topic_field(topic: str) -> bytes:
    raw = topic.encode("utf-8")
    if len(raw) > 0xFFFF:
        raise ValueError(f"topic name of {len(raw)} bytes exceeds 65535")
    field = _pack_u16(len(raw)) + raw
    if len(_TOPIC_FIELDS) >= _TOPIC_FIELDS_MAX:
        _TOPIC_FIELDS.clear()
    _TOPIC_FIELDS[topic] = field
    return field


def encode_publish(
    topic: str,
    payload: bytes,
    qos: int,
    retain: bool,
    dup: bool,
    packet_id: int | None,
    properties: dict[str, Any] | None,
    protocol_level: int,
) -> bytes:
    """PUBLISH (section 3.3). A packet id is required for QoS 1 and 2 [MQTT-2.2.1-2]."""
    head = _TOPIC_FIELDS.get(topic)
    if head is None:
        head = _topic_field(topic)
    if qos:
        if not packet_id:
            raise ValueError(f"PUBLISH QoS {qos} needs a packet identifier 1..65535, got {packet_id!r}")
        head += _pack_u16(packet_id)
    if protocol_level == 5:
        head += encode_properties(properties) if properties else b"\x00"
    remaining = len(head) + len(payload)
    first = 0x30 | (qos << 1) | (8 if dup else 0) | (1 if retain else 0)
    if remaining < 0x80:
        return _pack_head(first, remaining) + head + payload
    return b"".join((bytes((first,)), encode_varint(remaining), head, payload))


def _publish(packet: p.Publish, level: int) -> bytes:
    return encode_publish(
        packet.topic,
        packet.payload,
        packet.qos,
        packet.retain,
        packet.dup,
        packet.packet_id,
        packet.properties,
        level,
    )


def _connect(packet: p.Connect, level: int) -> bytes:
    """CONNECT (section 3.1). The level byte is the packet's own; ``level`` chooses the layout."""
    flags = 0x02 if packet.clean_start else 0
    will = packet.will
    will_part = b""
    if will is not None:
        flags |= 0x04 | (will.qos << 3) | (0x20 if will.retain else 0)
        will_part = (
            (encode_properties(will.properties) if level == 5 else b"")
            + encode_str(will.topic)
            + encode_bin(will.payload)
        )
    tail = b""
    if packet.username is not None:
        flags |= 0x80
        tail += encode_str(packet.username)
    if packet.password is not None:
        flags |= 0x40
        tail += encode_bin(packet.password)
    return _frame(
        0x10,
        encode_str(packet.proto_name),
        bytes((packet.proto_level, flags)),
        _u16(packet.keepalive),
        _props(packet, level),
        encode_str(packet.client_id),
        will_part,
        tail,
    )


def _connack(packet: p.Connack, level: int) -> bytes:
    """CONNACK (section 3.2): Session Present is 0 on failure [MQTT-3.2.2-4] [MQTT-3.2.2-6]."""
    code = packet.reason_code
    present = packet.session_present and code < R.FAILURE
    if level == 5:
        return _frame(0x20, bytes((1 if present else 0, code)), encode_properties(packet.properties))
    # MQTT 3.1 (level 3) has no Session Present flag: the byte is reserved.
    present = present and level == 4
    return bytes((0x20, 2, 1 if present else 0, v3_connack_code(code)))


_ACK = struct.Struct(">BBH").pack


def encode_ack(first: int, packet_id: int) -> bytes:
    """A successful PUBACK (0x40), PUBREC (0x50), PUBREL (0x62) or PUBCOMP (0x70) without properties:
    the same four bytes in every version (reason 0 is omitted in v5, section 3.4.2.1). The broker's
    hot path writes these without building a packet."""
    return _ACK(first, 2, packet_id)


# encode_ack(0x40, packet_id) as one C call (a partial of struct.pack, no Python frame): the broker
# writes one per QoS 1 PUBLISH it receives.
encode_puback: Callable[[int], bytes] = partial(_ACK, 0x40, 2)


def _ack(first: int) -> Callable[[Any, int], bytes]:
    """PUBACK/PUBREC/PUBREL/PUBCOMP (sections 3.4-3.7): v5 omits reason 0 and empty properties (3.4.2.1)."""

    def encode(packet: Any, level: int) -> bytes:
        packet_id = _u16(packet.packet_id)
        if level != 5 or (packet.reason_code == 0 and not packet.properties):
            return bytes((first, 2)) + packet_id
        if not packet.properties:
            return bytes((first, 3)) + packet_id + bytes((packet.reason_code,))
        return _frame(first, packet_id, bytes((packet.reason_code,)), encode_properties(packet.properties))

    return encode


def _subscribe(packet: p.Subscribe, level: int) -> bytes:
    """SUBSCRIBE (section 3.8); 3.1.1 options carry only the QoS."""
    parts = [_u16(packet.packet_id), _props(packet, level)]
    for sub in packet.subscriptions:
        options = sub.qos
        if level == 5:
            options |= (4 if sub.no_local else 0) | (8 if sub.retain_as_published else 0) | (sub.retain_handling << 4)
        parts.append(encode_str(sub.topic_filter))
        parts.append(bytes((options,)))
    return _frame(0x82, *parts)


def _suback(packet: p.Suback, level: int) -> bytes:
    """SUBACK (section 3.9); 3.1.1 has one failure code, 0x80 [MQTT-3.9.3-2]."""
    codes = packet.reason_codes
    if level != 5:
        codes = [R.V3_SUBACK_FAILURE if code >= R.FAILURE else code for code in codes]
    return _frame(0x90, _u16(packet.packet_id), _props(packet, level), bytes(codes))


def _unsubscribe(packet: p.Unsubscribe, level: int) -> bytes:
    """UNSUBSCRIBE (section 3.10)."""
    filters = b"".join(encode_str(f) for f in packet.topic_filters)
    return _frame(0xA2, _u16(packet.packet_id), _props(packet, level), filters)


def _unsuback(packet: p.Unsuback, level: int) -> bytes:
    """UNSUBACK (section 3.11): reason codes only in v5."""
    if level != 5:
        return b"\xb0\x02" + _u16(packet.packet_id)
    return _frame(0xB0, _u16(packet.packet_id), encode_properties(packet.properties), bytes(packet.reason_codes))


def _disconnect(packet: p.Disconnect, level: int) -> bytes:
    """DISCONNECT (section 3.14). v5 omits reason 0 and an empty property block (3.14.2.1, 3.14.2.2.1)."""
    if level != 5:
        return b""  # a 3.1.1 server closes without a packet; clients use V3_DISCONNECT
    if not packet.properties:
        return bytes((0xE0, 0)) if packet.reason_code == 0 else bytes((0xE0, 1, packet.reason_code))
    return _frame(0xE0, bytes((packet.reason_code,)), encode_properties(packet.properties))


def _auth(packet: p.Auth, level: int) -> bytes:
    """AUTH (section 3.15): v5 only; the body is empty for Success without properties (3.15.2.1)."""
    if level != 5:
        raise ValueError(f"AUTH does not exist in protocol level {level}")
    if packet.reason_code == 0 and not packet.properties:
        return b"\xf0\x00"
    return _frame(0xF0, bytes((packet.reason_code,)), encode_properties(packet.properties))


_ENCODERS: dict[int, Callable[[Any, int], bytes]] = {
    p.CONNECT: _connect,
    p.CONNACK: _connack,
    p.PUBLISH: _publish,
    p.PUBACK: _ack(0x40),
    p.PUBREC: _ack(0x50),
    p.PUBREL: _ack(0x62),
    p.PUBCOMP: _ack(0x70),
    p.SUBSCRIBE: _subscribe,
    p.SUBACK: _suback,
    p.UNSUBSCRIBE: _unsubscribe,
    p.UNSUBACK: _unsuback,
    p.PINGREQ: lambda packet, level: b"\xc0\x00",
    p.PINGRESP: lambda packet, level: b"\xd0\x00",
    p.DISCONNECT: _disconnect,
    p.AUTH: _auth,
}


def encode(packet: p.Packet, protocol_level: int) -> bytes:
    """The wire bytes of ``packet`` for ``protocol_level`` (3 and 4 share the 3.1.1 layout, 5 is MQTT 5)."""
    return _ENCODERS[packet.type](packet, protocol_level)
