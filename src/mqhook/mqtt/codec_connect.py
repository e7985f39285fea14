"""Decoding of CONNECT (section 3.1) and CONNACK (section 3.2).

CONNECT is parsed by the protocol level it declares. The decoder reads the
protocol name and level first (``read_protocol``) and adopts the level before
decoding the rest, so a CONNECT rejected later is still answered in its version.
"""

from __future__ import annotations

from typing import Any

from mqhook.errors import MalformedPacket, ProtocolError
from mqhook.mqtt import packets as p
from mqhook.mqtt import reason as R
from mqhook.mqtt.properties import WILL, decode_properties
from mqhook.mqtt.topics import validate_topic_name
from mqhook.mqtt.wire import read_bin, read_str, read_u16

# (protocol name, level) pairs mqhook speaks (sections 3.1.2.1 and 3.1.2.2).
SUPPORTED = {("MQIsdp", 3), ("MQTT", 4), ("MQTT", 5)}

# 3.1.1 CONNACK return codes (section 3.2.2.3) -> the v5 reason code Connack carries.


def _read_byte(b: bytes, pos: int, end: int, what: str) -> int:
    if pos >= end:
        raise MalformedPacket(f"{what}: truncated, 1 byte needed")
    value: int = b[pos]
    return value


def _check_flags(flags: int, level: int) -> None:
    """Connect Flags consistency (section 3.1.2.3 - 3.1.2.9)."""
    if flags & 0x01:
        raise MalformedPacket("CONNECT reserved flag is 1, must be 0 [MQTT-3.1.2-3]")
    will_qos = (flags >> 3) & 3
    if flags & 0x04:
        if will_qos == 3:
            raise MalformedPacket("CONNECT Will QoS 3 is invalid [MQTT-3.1.2-12]")
    else:
        if will_qos:
            raise MalformedPacket(f"CONNECT Will QoS is {will_qos} but the Will Flag is 0 [MQTT-3.1.2-11]")
        if flags & 0x20:
            raise MalformedPacket("CONNECT Will Retain is 1 but the Will Flag is 0 [MQTT-3.1.2-13]")
    if level < 5 and flags & 0x40 and not flags & 0x80:
        raise MalformedPacket("CONNECT Password Flag is 1 but the User Name Flag is 0 [MQTT-3.1.2-22]")


def _check_auth(props: dict[str, Any]) -> None:
    """Authentication Data without Authentication Method is a Protocol Error (section 3.1.2.11.10)."""
    if "Authentication-Data" in props and "Authentication-Method" not in props:
        raise ProtocolError(R.PROTOCOL_ERROR, "CONNECT has Authentication-Data but no Authentication-Method")


def _read_will(b: bytes, pos: int, end: int, flags: int, level: int) -> tuple[p.Will, int]:
    """Will Properties (v5), Will Topic and Will Payload (section 3.1.3.2 - 3.1.3.4)."""
    props: dict[str, Any] = {}
    if level == 5:
        props, pos = decode_properties(b, pos, end, WILL)
    topic, pos = read_str(b, pos, end, "CONNECT Will Topic")
    validate_topic_name(topic)
    payload, pos = read_bin(b, pos, end, "CONNECT Will Payload")
    return p.Will(topic, payload, (flags >> 3) & 3, bool(flags & 0x20), props), pos


def read_protocol(b: bytes, pos: int, end: int) -> tuple[str, int, int]:
    """Protocol Name and Level: (name, level, next pos). Unsupported pairs are ProtocolError 0x84 [MQTT-3.1.2-2]."""
    name, pos = read_str(b, pos, end, "CONNECT protocol name")
    level = _read_byte(b, pos, end, "CONNECT protocol level")
    if (name, level) not in SUPPORTED:
        raise ProtocolError(
            R.UNSUPPORTED_PROTOCOL_VERSION, f"unsupported protocol {name!r} level {level} [MQTT-3.1.2-2]"
        )
    return name, level, pos + 1


def decode_connect(b: bytes, pos: int, end: int, name: str, level: int) -> p.Connect:
    """The rest of CONNECT after ``read_protocol``: flags, keep alive, properties, payload (section 3.1)."""
    flags = _read_byte(b, pos, end, "CONNECT flags")
    _check_flags(flags, level)
    keepalive, pos = read_u16(b, pos + 1, end, "CONNECT keep alive")
    props: dict[str, Any] = {}
    if level == 5:
        props, pos = decode_properties(b, pos, end, p.CONNECT)
        _check_auth(props)
    client_id, pos = read_str(b, pos, end, "CONNECT client identifier")
    will = None
    if flags & 0x04:
        will, pos = _read_will(b, pos, end, flags, level)
    username = password = None
    if flags & 0x80:
        username, pos = read_str(b, pos, end, "CONNECT user name")
    if flags & 0x40:
        password, pos = read_bin(b, pos, end, "CONNECT password")
    if pos != end:
        raise MalformedPacket(f"CONNECT has {end - pos} unexpected bytes at its end")
    return p.Connect(client_id, level, name, bool(flags & 0x02), keepalive, will, username, password, props)


def decode_connack(b: bytes, pos: int, end: int, level: int) -> p.Packet:
    """CONNACK: bits 7-1 of the acknowledge flags are reserved [MQTT-3.2.2-1]; 3.1.1 codes become v5 codes."""
    flags = _read_byte(b, pos, end, "CONNACK acknowledge flags")
    if flags & 0xFE:
        raise MalformedPacket(f"CONNACK acknowledge flags 0x{flags:02X} have reserved bits set [MQTT-3.2.2-1]")
    code = _read_byte(b, pos + 1, end, "CONNACK reason code")
    pos += 2
    props: dict[str, Any] = {}
    if level == 5:
        props, pos = decode_properties(b, pos, end, p.CONNACK)
    else:
        if code not in R.V5_FROM_V3_CONNACK:
            raise MalformedPacket(f"CONNACK return code {code} is reserved (section 3.2.2.3)")
        code = R.V5_FROM_V3_CONNACK[code]
    if pos != end:
        raise MalformedPacket(f"CONNACK has {end - pos} unexpected bytes at its end")
    return p.Connack(bool(flags & 1), code, props)
