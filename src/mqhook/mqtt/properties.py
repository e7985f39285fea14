"""MQTT 5 properties (section 2.2.2): identifiers, EMQX-style names, decoding, encoding, placement rules.

A property block is a dict keyed by name (``"Message-Expiry-Interval"``...).
``User-Property`` is a list of ``(key, value)`` pairs in wire order;
``Subscription-Identifier`` is a list of ints in PUBLISH (it may repeat) and
a single int in SUBSCRIBE. Will properties use the pseudo packet type ``WILL``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from mqhook.errors import MalformedPacket, ProtocolError
from mqhook.mqtt import packets as p
from mqhook.mqtt import reason as R
from mqhook.mqtt.wire import (
    encode_bin,
    encode_str,
    encode_varint,
    read_bin,
    read_str,
    read_u16,
    read_u32,
    read_varint,
)

WILL = 0  # pseudo packet type of the Will Properties in CONNECT (type 0 is reserved on the wire)

BYTE, U16, U32, VARINT, STR, BIN, PAIR = range(7)

# id: (name, data type, packet types where it may appear) -- the table of section 2.2.2.2.
_PUB = (p.PUBLISH, WILL)
_ACKS = (p.PUBACK, p.PUBREC, p.PUBREL, p.PUBCOMP, p.SUBACK, p.UNSUBACK)
_ALL = (p.CONNECT, p.CONNACK, p.PUBLISH, WILL, *_ACKS, p.SUBSCRIBE, p.UNSUBSCRIBE, p.DISCONNECT, p.AUTH)
TABLE: dict[int, tuple[str, int, tuple[int, ...]]] = {
    0x01: ("Payload-Format-Indicator", BYTE, _PUB),
    0x02: ("Message-Expiry-Interval", U32, _PUB),
    0x03: ("Content-Type", STR, _PUB),
    0x08: ("Response-Topic", STR, _PUB),
    0x09: ("Correlation-Data", BIN, _PUB),
    0x0B: ("Subscription-Identifier", VARINT, (p.PUBLISH, p.SUBSCRIBE)),
    0x11: ("Session-Expiry-Interval", U32, (p.CONNECT, p.CONNACK, p.DISCONNECT)),
    0x12: ("Assigned-Client-Identifier", STR, (p.CONNACK,)),
    0x13: ("Server-Keep-Alive", U16, (p.CONNACK,)),
    0x15: ("Authentication-Method", STR, (p.CONNECT, p.CONNACK, p.AUTH)),
    0x16: ("Authentication-Data", BIN, (p.CONNECT, p.CONNACK, p.AUTH)),
    0x17: ("Request-Problem-Information", BYTE, (p.CONNECT,)),
    0x18: ("Will-Delay-Interval", U32, (WILL,)),
    0x19: ("Request-Response-Information", BYTE, (p.CONNECT,)),
    0x1A: ("Response-Information", STR, (p.CONNACK,)),
    0x1C: ("Server-Reference", STR, (p.CONNACK, p.DISCONNECT)),
    0x1F: ("Reason-String", STR, (p.CONNACK, *_ACKS, p.DISCONNECT, p.AUTH)),
    0x21: ("Receive-Maximum", U16, (p.CONNECT, p.CONNACK)),
    0x22: ("Topic-Alias-Maximum", U16, (p.CONNECT, p.CONNACK)),
    0x23: ("Topic-Alias", U16, (p.PUBLISH,)),
    0x24: ("Maximum-QoS", BYTE, (p.CONNACK,)),
    0x25: ("Retain-Available", BYTE, (p.CONNACK,)),
    0x26: ("User-Property", PAIR, _ALL),
    0x27: ("Maximum-Packet-Size", U32, (p.CONNECT, p.CONNACK)),
    0x28: ("Wildcard-Subscription-Available", BYTE, (p.CONNACK,)),
    0x29: ("Subscription-Identifier-Available", BYTE, (p.CONNACK,)),
    0x2A: ("Shared-Subscription-Available", BYTE, (p.CONNACK,)),
}

NAMES: dict[int, str] = {pid: entry[0] for pid, entry in TABLE.items()}
IDS: dict[str, int] = {entry[0]: pid for pid, entry in TABLE.items()}
_TYPES: dict[str, int] = {entry[0]: entry[1] for entry in TABLE.values()}
ALLOWED: dict[int, frozenset[int]] = {
    ptype: frozenset(pid for pid, entry in TABLE.items() if ptype in entry[2]) for ptype in _ALL
}
_CONTEXT_NAMES = {**p.PACKET_NAMES, WILL: "Will Properties"}

USER_PROPERTY = "User-Property"
SUBSCRIPTION_IDENTIFIER = "Subscription-Identifier"
_BOOLEANS = frozenset(
    {
        "Payload-Format-Indicator",
        "Request-Problem-Information",
        "Request-Response-Information",
        "Maximum-QoS",
        "Retain-Available",
        "Wildcard-Subscription-Available",
        "Subscription-Identifier-Available",
        "Shared-Subscription-Available",
    }
)
_NON_ZERO = frozenset({"Receive-Maximum", "Maximum-Packet-Size", "Subscription-Identifier"})


# ---------------------------------------------------------------- decoding


def _read_value(kind: int, b: bytes, pos: int, end: int, what: str) -> tuple[Any, int]:
    if kind == BYTE:
        if pos >= end:
            raise MalformedPacket(f"{what}: truncated, 1 byte needed")
        return b[pos], pos + 1
    if kind == U16:
        return read_u16(b, pos, end, what)
    if kind == U32:
        return read_u32(b, pos, end, what)
    if kind == VARINT:
        return read_varint(b, pos, end, what)
    if kind == STR:
        return read_str(b, pos, end, what)
    if kind == BIN:
        return read_bin(b, pos, end, what)
    key, pos = read_str(b, pos, end, what + " key")
    value, pos = read_str(b, pos, end, what + " value")
    return (key, value), pos


def decode_properties(b: bytes, pos: int, end: int, ptype: int) -> tuple[dict[str, Any], int]:
    """Decode the property block at ``pos`` (length varint first) for packet type ``ptype``.

    An identifier unknown or not allowed in that packet is a Malformed Packet;
    a repeated non-repeatable property is a Protocol Error (section 2.2.2.2).
    Returns (properties, position after the block).
    """
    length, pos = read_varint(b, pos, end, "property length")
    stop = pos + length
    if stop > end:
        raise MalformedPacket(f"property length {length} overruns the packet by {stop - end} bytes")
    props: dict[str, Any] = {}
    allowed = ALLOWED[ptype]
    while pos < stop:
        pid, pos = read_varint(b, pos, stop, "property identifier")
        if pid not in allowed:
            raise MalformedPacket(_not_allowed(pid, ptype))
        name, kind, _ = TABLE[pid]
        value, pos = _read_value(kind, b, pos, stop, name)
        _store(props, name, value, ptype)
    _check_values(props, ptype)
    return props, stop


def _not_allowed(pid: int, ptype: int) -> str:
    where = _CONTEXT_NAMES.get(ptype, str(ptype))
    if pid not in TABLE:
        return f"unknown property identifier 0x{pid:02X} in {where} (section 2.2.2.2)"
    return f"property {NAMES[pid]} (0x{pid:02X}) is not allowed in {where} (section 2.2.2.2)"


def _store(props: dict[str, Any], name: str, value: Any, ptype: int) -> None:
    """Insert one property; only User-Property and PUBLISH's Subscription-Identifier may repeat."""
    repeatable = name == USER_PROPERTY or (name == SUBSCRIPTION_IDENTIFIER and ptype == p.PUBLISH)
    if repeatable:
        props.setdefault(name, []).append(value)
    elif name in props:
        where = _CONTEXT_NAMES.get(ptype, str(ptype))
        raise ProtocolError(R.PROTOCOL_ERROR, f"property {name} appears more than once in {where} (section 2.2.2.2)")
    else:
        props[name] = value


def _check_values(props: dict[str, Any], ptype: int) -> None:
    """Value ranges whose violation the spec calls a Protocol Error (sections 3.1.2.11, 3.2.2.3, 3.3.2.3)."""
    for name, value in props.items():
        if name in _BOOLEANS and value > 1:
            raise ProtocolError(R.PROTOCOL_ERROR, f"property {name} is {value}, must be 0 or 1")
        if name in _NON_ZERO and (value == 0 or (isinstance(value, list) and 0 in value)):
            raise ProtocolError(R.PROTOCOL_ERROR, f"property {name} must not be 0")
        if name == "Topic-Alias" and value == 0:
            raise ProtocolError(R.TOPIC_ALIAS_INVALID, "property Topic-Alias must not be 0 [MQTT-3.3.2-8]")


# ---------------------------------------------------------------- encoding


def _encode_value(kind: int, value: Any) -> bytes:
    if kind == BYTE:
        return bytes((value,))
    if kind == U16:
        return int(value).to_bytes(2, "big")
    if kind == U32:
        return int(value).to_bytes(4, "big")
    if kind == VARINT:
        return encode_varint(value)
    if kind == STR:
        return encode_str(value)
    if kind == BIN:
        return encode_bin(bytes(value))
    key, val = value
    return encode_str(key) + encode_str(val)


def _values(name: str, value: Any) -> Iterable[Any]:
    """The wire entries of one dict item: repeatable properties expand to several."""
    if name == USER_PROPERTY:
        return value.items() if isinstance(value, dict) else value
    if name == SUBSCRIPTION_IDENTIFIER and isinstance(value, list | tuple):
        return value
    return (value,)


def encode_properties(props: dict[str, Any] | None) -> bytes:
    """The property block of ``props``: length varint then the properties, in dict order.

    ``User-Property`` may be a list of pairs or a dict. Unknown names raise ValueError.
    """
    if not props:
        return b"\x00"
    parts: list[bytes] = []
    for name, value in props.items():
        pid = IDS.get(name)
        if pid is None:
            raise ValueError(f"unknown MQTT property name {name!r}")
        head = bytes((pid,))
        kind = _TYPES[name]
        for item in _values(name, value):
            parts.append(head)
            parts.append(_encode_value(kind, item))
    body = b"".join(parts)
    return encode_varint(len(body)) + body
