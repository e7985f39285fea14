"""Decoding of SUBSCRIBE, SUBACK, UNSUBSCRIBE and UNSUBACK (sections 3.8 - 3.11).

Topic filters are only checked as UTF-8 strings here: the broker validates
each filter and answers with a per-filter reason code.
"""

from __future__ import annotations

from typing import Any

from mqhook.errors import MalformedPacket, ProtocolError
from mqhook.mqtt import packets as p
from mqhook.mqtt import reason as R
from mqhook.mqtt.properties import decode_properties
from mqhook.mqtt.wire import read_str, read_u16


def _packet_id(b: bytes, pos: int, end: int, name: str) -> tuple[int, int]:
    """A non-zero Packet Identifier [MQTT-2.2.1-3]."""
    packet_id, pos = read_u16(b, pos, end, name + " packet identifier")
    if packet_id == 0:
        raise MalformedPacket(f"{name} with packet identifier 0 [MQTT-2.2.1-3]")
    return packet_id, pos


def _options(options: int, topic_filter: str, level: int) -> p.Subscription:
    """Subscription Options (section 3.8.3.1); 3.1.1 has only the requested QoS."""
    qos = options & 3
    if level == 5:
        if options & 0xC0:
            raise MalformedPacket(
                f"SUBSCRIBE options 0x{options:02X} for {topic_filter!r} have reserved bits set [MQTT-3.8.3-5]"
            )
        if qos == 3:
            raise ProtocolError(R.PROTOCOL_ERROR, f"SUBSCRIBE QoS 3 for {topic_filter!r} is invalid (section 3.8.3.1)")
        retain_handling = (options >> 4) & 3
        if retain_handling == 3:
            raise ProtocolError(
                R.PROTOCOL_ERROR, f"SUBSCRIBE Retain Handling 3 for {topic_filter!r} is invalid (section 3.8.3.1)"
            )
        return p.Subscription(topic_filter, qos, bool(options & 4), bool(options & 8), retain_handling)
    if options & 0xFC or qos == 3:
        raise MalformedPacket(
            f"SUBSCRIBE options 0x{options:02X} for {topic_filter!r}: reserved bits set or QoS 3 [MQTT-3.8.3-4]"
        )
    return p.Subscription(topic_filter, qos)


def decode_subscribe(b: bytes, pos: int, end: int, level: int) -> p.Packet:
    """SUBSCRIBE: at least one filter [MQTT-3.8.3-2]; Subscription-Identifier is a single int."""
    packet_id, pos = _packet_id(b, pos, end, "SUBSCRIBE")
    props: dict[str, Any] = {}
    if level == 5:
        props, pos = decode_properties(b, pos, end, p.SUBSCRIBE)
    subscriptions: list[p.Subscription] = []
    while pos < end:
        topic_filter, pos = read_str(b, pos, end, "SUBSCRIBE topic filter")
        if pos >= end:
            raise MalformedPacket(f"SUBSCRIBE topic filter {topic_filter!r} has no subscription options")
        subscriptions.append(_options(b[pos], topic_filter, level))
        pos += 1
    if not subscriptions:
        raise ProtocolError(R.PROTOCOL_ERROR, "SUBSCRIBE has no topic filters [MQTT-3.8.3-2]")
    return p.Subscribe(packet_id, subscriptions, props)


def decode_suback(b: bytes, pos: int, end: int, level: int) -> p.Packet:
    """SUBACK: one reason code per filter; 3.1.1 failures are 0x80 (section 3.9.3)."""
    packet_id, pos = _packet_id(b, pos, end, "SUBACK")
    props: dict[str, Any] = {}
    if level == 5:
        props, pos = decode_properties(b, pos, end, p.SUBACK)
    return p.Suback(packet_id, list(b[pos:end]), props)


def decode_unsubscribe(b: bytes, pos: int, end: int, level: int) -> p.Packet:
    """UNSUBSCRIBE: at least one filter [MQTT-3.10.3-2]."""
    packet_id, pos = _packet_id(b, pos, end, "UNSUBSCRIBE")
    props: dict[str, Any] = {}
    if level == 5:
        props, pos = decode_properties(b, pos, end, p.UNSUBSCRIBE)
    filters: list[str] = []
    while pos < end:
        topic_filter, pos = read_str(b, pos, end, "UNSUBSCRIBE topic filter")
        filters.append(topic_filter)
    if not filters:
        raise ProtocolError(R.PROTOCOL_ERROR, "UNSUBSCRIBE has no topic filters [MQTT-3.10.3-2]")
    return p.Unsubscribe(packet_id, filters, props)


def decode_unsuback(b: bytes, pos: int, end: int, level: int) -> p.Packet:
    """UNSUBACK: reason codes exist only in v5 (section 3.11.3); in 3.1.1 the body is the packet id alone."""
    packet_id, pos = _packet_id(b, pos, end, "UNSUBACK")
    if level != 5:
        if pos != end:
            raise MalformedPacket(f"UNSUBACK has {end - pos} unexpected bytes at its end")
        return p.Unsuback(packet_id)
    props, pos = decode_properties(b, pos, end, p.UNSUBACK)
    return p.Unsuback(packet_id, list(b[pos:end]), props)
