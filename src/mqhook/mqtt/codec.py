"""The MQTT decoder: bytes in, packets out (sans-I/O, section 2 and 3).

``Decoder.feed`` accepts the byte stream in any chunking and returns the whole
packets it completes. It owns the fixed header (section 2.1), the PUBLISH fast
path and the small control packets; CONNECT/CONNACK live in ``codec_connect``
and the subscribe family in ``codec_subscribe``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mqhook.errors import MalformedPacket, ProtocolError
from mqhook.mqtt import packets as p
from mqhook.mqtt import reason as R
from mqhook.mqtt.codec_connect import decode_connack, decode_connect, read_protocol
from mqhook.mqtt.codec_subscribe import decode_suback, decode_subscribe, decode_unsuback, decode_unsubscribe
from mqhook.mqtt.properties import decode_properties
from mqhook.mqtt.topics import validate_topic_name
from mqhook.mqtt.wire import MAX_VARINT, read_u16

Body = Callable[[bytes, int, int, int], p.Packet]


# Valid topic names seen recently, by their wire bytes. Publishers repeat topics, so a
# hit skips UTF-8 decoding and validation and hands the broker one shared str whose
# hash is already computed. Bounded by count and by bytes (a client choosing 60 KB topic
# names must not make 4096 of them stay: +459 MB before the byte bound): emptied when full.
_TOPICS: dict[bytes, str] = {}
_TOPICS_MAX = 4096
_TOPICS_MAX_BYTES = 1 << 20  # of topic names' wire bytes; each is held twice (bytes key, str value)
_TOPICS_LONGEST = 1024  # longer names are not cached: a few would fill it
_topics_bytes = 0
_Publish = p.Publish
_Puback = p.Puback
_PUBLISH = p.PUBLISH
# The properties of every PUBLISH without any (all of 3.1.1's): one shared empty dict, which nobody
# writes (the broker copies a message's properties before it changes them), instead of one per message.
_NO_PROPS: dict[str, Any] = {}


def decode_publish(b: bytes, pos: int, end: int, flags: int, level: int) -> p.Publish:
    """PUBLISH (section 3.3), written tight: it is the packet that matters for throughput."""
    qos = (flags >> 1) & 3
    if qos == 3:
        raise MalformedPacket("PUBLISH QoS 3 is invalid [MQTT-3.3.1-4]")
    if pos + 2 > end:
        raise MalformedPacket("PUBLISH topic name: truncated, 2 bytes needed")
    start = pos + 2
    pos = start + ((b[pos] << 8) | b[pos + 1])
    if pos > end:
        raise MalformedPacket(f"PUBLISH topic name overruns the packet by {pos - end} bytes")
    raw = b[start:pos]
    topic = _TOPICS.get(raw)
    if topic is None:
        topic = _new_topic(raw)
    packet_id: int | None = None
    if qos:
        if pos + 2 > end:
            raise MalformedPacket("PUBLISH packet identifier: truncated, 2 bytes needed")
        packet_id = (b[pos] << 8) | b[pos + 1]
        if packet_id == 0:
            raise MalformedPacket(f"PUBLISH QoS {qos} with packet identifier 0 [MQTT-2.2.1-3]")
        pos += 2
    elif flags & 8:
        raise ProtocolError(R.PROTOCOL_ERROR, "PUBLISH QoS 0 with DUP flag set [MQTT-3.3.1-2]")
    props: dict[str, Any]
    if level != 5:
        props = _NO_PROPS
    elif pos < end and b[pos] == 0:
        props = _NO_PROPS
        pos += 1
    else:
        props, pos = decode_properties(b, pos, end, p.PUBLISH)
    if not topic and "Topic-Alias" not in props:
        validate_topic_name(topic)  # empty: only a v5 Topic-Alias may stand for it (section 3.3.2.3.4)
    return _Publish(topic, b[pos:end], qos, (flags & 1) != 0, (flags & 8) != 0, packet_id, props)


def _new_topic(raw: bytes) -> str:
    """Decode and check a topic name not in the cache: UTF-8 [MQTT-1.5.4-1], no U+0000 [MQTT-1.5.4-2],
    no wildcards [MQTT-3.3.2-2]. The empty name is returned unchecked: it is legal with a Topic-Alias."""
    try:
        topic = raw.decode()
    except UnicodeDecodeError as exc:
        raise MalformedPacket(f"PUBLISH topic name is not valid UTF-8 ({exc.reason}) [MQTT-1.5.4-1]") from None
    if "\x00" in topic:
        raise MalformedPacket(f"PUBLISH topic name {topic!r} contains U+0000 [MQTT-1.5.4-2]")
    if topic:
        validate_topic_name(topic)
        size = len(raw)
        if size <= _TOPICS_LONGEST:
            global _topics_bytes
            if len(_TOPICS) >= _TOPICS_MAX or _topics_bytes + size > _TOPICS_MAX_BYTES:
                _TOPICS.clear()
                _topics_bytes = 0
            _TOPICS[raw] = topic
            _topics_bytes += size
    return topic


def _decode_ack(ptype: int) -> Body:
    """PUBACK, PUBREC, PUBREL, PUBCOMP (sections 3.4-3.7): reason and properties may be omitted in v5."""
    classes: dict[int, type[p.Puback | p.Pubrec | p.Pubrel | p.Pubcomp]] = {
        p.PUBACK: p.Puback,
        p.PUBREC: p.Pubrec,
        p.PUBREL: p.Pubrel,
        p.PUBCOMP: p.Pubcomp,
    }
    cls = classes[ptype]
    name = p.PACKET_NAMES[ptype]

    def decode(b: bytes, pos: int, end: int, level: int) -> p.Packet:
        if end - pos == 2:  # the usual ack: a packet id only (3.1.1, and v5 success without properties)
            packet_id = (b[pos] << 8) | b[pos + 1]
            if packet_id == 0:
                raise MalformedPacket(f"{name} with packet identifier 0 [MQTT-2.2.1-3]")
            return cls(packet_id)
        packet_id, pos = read_u16(b, pos, end, name + " packet identifier")
        if packet_id == 0:
            raise MalformedPacket(f"{name} with packet identifier 0 [MQTT-2.2.1-3]")
        reason = 0
        props: dict[str, Any] = {}
        if level == 5 and pos < end:
            reason = b[pos]
            pos += 1
            if pos < end:
                props, pos = decode_properties(b, pos, end, ptype)
        _no_leftover(name, pos, end)
        return cls(packet_id, reason, props)

    return decode


def _decode_pingreq(b: bytes, pos: int, end: int, level: int) -> p.Packet:
    _no_leftover("PINGREQ", pos, end)
    return p.Pingreq()


def _decode_pingresp(b: bytes, pos: int, end: int, level: int) -> p.Packet:
    _no_leftover("PINGRESP", pos, end)
    return p.Pingresp()


def _decode_disconnect(b: bytes, pos: int, end: int, level: int) -> p.Packet:
    """DISCONNECT (section 3.14): empty in 3.1.1; in v5 the reason and properties may be omitted."""
    reason = 0
    props: dict[str, Any] = {}
    if level == 5 and pos < end:
        reason = b[pos]
        pos += 1
        if pos < end:
            props, pos = decode_properties(b, pos, end, p.DISCONNECT)
    _no_leftover("DISCONNECT", pos, end)
    return p.Disconnect(reason, props)


def _decode_auth(b: bytes, pos: int, end: int, level: int) -> p.Packet:
    """AUTH (section 3.15): v5 only; an empty body means Success with no properties."""
    if level != 5:
        raise MalformedPacket(f"packet type 15 (AUTH) does not exist in protocol level {level}")
    reason = 0
    props: dict[str, Any] = {}
    if pos < end:
        reason = b[pos]
        pos += 1
        if pos < end:
            props, pos = decode_properties(b, pos, end, p.AUTH)
    _no_leftover("AUTH", pos, end)
    return p.Auth(reason, props)


def _no_leftover(name: str, pos: int, end: int) -> None:
    if pos != end:
        raise MalformedPacket(f"{name} has {end - pos} unexpected bytes at its end")


_BODIES: dict[int, Body] = {
    p.CONNACK: decode_connack,
    p.PUBACK: _decode_ack(p.PUBACK),
    p.PUBREC: _decode_ack(p.PUBREC),
    p.PUBREL: _decode_ack(p.PUBREL),
    p.PUBCOMP: _decode_ack(p.PUBCOMP),
    p.SUBSCRIBE: decode_subscribe,
    p.SUBACK: decode_suback,
    p.UNSUBSCRIBE: decode_unsubscribe,
    p.UNSUBACK: decode_unsuback,
    p.PINGREQ: _decode_pingreq,
    p.PINGRESP: _decode_pingresp,
    p.DISCONNECT: _decode_disconnect,
    p.AUTH: _decode_auth,
}

# Fixed header flags are reserved except in PUBLISH [MQTT-2.2.2-1]; these three must be 0b0010.
_FLAGS = {ptype: 0 for ptype in _BODIES} | {p.CONNECT: 0, p.PUBREL: 2, p.SUBSCRIBE: 2, p.UNSUBSCRIBE: 2}


def _long_length(b: bytes, pos: int, n: int) -> tuple[int, int]:
    """Remaining length of 2..4 bytes starting at ``pos``: (value, header size), or (0, 0) if incomplete."""
    value = 0
    shift = 0
    i = pos
    while i < n:
        byte = b[i]
        i += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, i - pos
        shift += 7
        if shift >= 28:
            raise MalformedPacket("remaining length is longer than 4 bytes [MQTT-1.5.5-1]")
    return 0, 0


class Decoder:
    """Stream decoder for one connection. The first packet must be CONNECT [MQTT-3.1.0-1].

    ``protocol_level`` is None until the first CONNECT names a supported protocol
    (3, 4 or 5); it is set before the rest of that CONNECT is checked, so the
    broker can answer a bad CONNECT in the client's version. A client-side decoder,
    which receives CONNACK first, passes ``protocol_level`` up front.

    Bytes of an unfinished packet wait in a bytearray; ``_need`` is the size that
    packet will have (0 while its fixed header is incomplete), so a large packet
    arriving in many chunks is appended, not re-copied or re-parsed, until whole.
    Whole packets are parsed from an immutable ``bytes`` object, whose slices are
    the cheapest way to produce topics and payloads; nothing refers to the
    caller's buffer after ``feed`` returns.
    """

    __slots__ = ("_buf", "_need", "fault", "max_connect_size", "max_packet_size", "protocol_level")

    def __init__(
        self,
        max_packet_size: int = MAX_VARINT,
        *,
        protocol_level: int | None = None,
        max_connect_size: int = MAX_VARINT,
    ) -> None:
        self.max_packet_size = max_packet_size
        # The first packet (the CONNECT) of a server-side decoder may be at most this large: a peer
        # that has not connected yet cannot make the broker hold a megabyte of unfinished CONNECT.
        self.max_connect_size = max_connect_size
        self.protocol_level = protocol_level
        self.fault: ProtocolError | None = None  # the error that ended decoding; feed raises it again
        self._buf = bytearray()
        self._need = 0

    def feed(self, data: bytes | bytearray | memoryview) -> list[p.Packet]:
        """Add bytes; return the packets completed (possibly none). An error is raised, and the
        packets before it in ``data`` are lost: a server uses ``decode``, which keeps them."""
        packets, fault = self.decode(data)
        if fault is not None:
            raise fault
        return packets

    def decode(self, data: bytes | bytearray | memoryview) -> tuple[list[p.Packet], ProtocolError | None]:
        """Add bytes; return the packets completed and, if the stream broke, the error after them
        (the packets before a fault are handled, then the connection closes [MQTT-4.13.1-1]).
        After an error the decoder is unusable: every later call returns it again."""
        if self.fault is not None:
            return [], self.fault
        buf = self._buf
        if buf:
            buf += data
            if len(buf) < self._need:
                return [], None
            src = bytes(buf)
            buf.clear()
        else:
            src = data if type(data) is bytes else bytes(data)
        out: list[p.Packet] = []
        try:
            pos = self._parse(src, out)
        except ProtocolError as exc:
            self.fault = exc
            return out, exc
        if pos < len(src):
            with memoryview(src) as view:
                buf += view[pos:]
        return out, None

    def _parse(self, b: bytes, out: list[p.Packet]) -> int:
        """Decode whole packets from ``b`` into ``out``; return where the unfinished rest starts."""
        level = self.protocol_level
        max_size = self.max_packet_size if level is not None else min(self.max_packet_size, self.max_connect_size)
        n = len(b)
        pos = 0
        self._need = 0
        while pos < n:
            first = b[pos]
            if level is None and first >> 4 != p.CONNECT:
                raise ProtocolError(
                    R.PROTOCOL_ERROR, f"first packet is type {first >> 4}, must be CONNECT [MQTT-3.1.0-1]"
                )
            if pos + 1 >= n:
                break
            size = b[pos + 1]
            head = 2
            if size >= 0x80:
                size, head = _long_length(b, pos + 1, n)
                if not head:
                    break
                head += 1
            total = head + size
            if total > max_size:
                raise self._too_large(total)
            end = pos + total
            if end > n:
                self._need = total
                break
            if first >> 4 == _PUBLISH and level is not None:
                out.append(decode_publish(b, pos + head, end, first & 0x0F, level))
            elif first == 0x40 and total == 4 and level is not None:
                # The usual PUBACK (a packet id only), inline: a QoS 1 subscriber sends one per message.
                # The same checks and result as _decode_ack's.
                packet_id = (b[pos + 2] << 8) | b[pos + 3]
                if packet_id == 0:
                    raise MalformedPacket("PUBACK with packet identifier 0 [MQTT-2.2.1-3]")
                out.append(_Puback(packet_id))
            else:
                out.append(self._decode_other(b, pos + head, end, first))
                if level is None:  # that was the CONNECT: from now on, packets of max_packet_size
                    level = self.protocol_level
                    max_size = self.max_packet_size
            pos = end
        return pos

    def _too_large(self, total: int) -> ProtocolError:
        if total > self.max_packet_size:
            return ProtocolError(
                R.PACKET_TOO_LARGE, f"packet of {total} bytes exceeds max_packet_size {self.max_packet_size}"
            )
        return ProtocolError(
            R.PACKET_TOO_LARGE, f"CONNECT of {total} bytes exceeds max_connect_size {self.max_connect_size}"
        )

    def _decode_other(self, b: bytes, pos: int, end: int, first: int) -> p.Packet:
        """Every packet but PUBLISH: check the reserved flags [MQTT-2.2.2-2], then the body."""
        ptype = first >> 4
        flags = first & 0x0F
        expected = _FLAGS.get(ptype)
        if expected is None:
            raise MalformedPacket(f"packet type {ptype} is reserved (section 2.1.2)")
        if flags != expected:
            name = p.PACKET_NAMES[ptype]
            raise MalformedPacket(f"{name} fixed header flags are 0x{flags:X}, must be 0x{expected:X} [MQTT-2.2.2-2]")
        if ptype == p.CONNECT:
            proto_name, proto_level, pos = read_protocol(b, pos, end)
            if self.protocol_level is None:
                self.protocol_level = proto_level
            return decode_connect(b, pos, end, proto_name, proto_level)
        level = self.protocol_level
        assert level is not None  # _parse lets only CONNECT through before the level is known
        return _BODIES[ptype](b, pos, end, level)
