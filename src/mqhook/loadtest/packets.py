"""Hand-built MQTT 3.1.1 packets and the payload format of ``mqhook bench``.

Nothing here imports mqhook's codec: a load generator must not share the code it measures.
Packets are assembled with ``struct`` once per client (CONNECT, SUBSCRIBE) or from a
pre-encoded %-template per chunk of PUBLISHes (see ``PublishTemplate``).

Payload format (at least ``MIN_PAYLOAD`` = 32 bytes, ASCII so it survives a webhook's
``payload_encoding = "plain"`` as text and decodes from ``"base64"``)::

    16 lowercase hex digits: ident = publisher index << 40 | sequence number
    16 lowercase hex digits: send time, time.time_ns()
    '.' padding up to the payload size
"""

from __future__ import annotations

import base64
import binascii
import struct

MIN_PAYLOAD = 32
SEQ_BITS = 40
SEQ_MASK = (1 << SEQ_BITS) - 1
MAX_PUBLISHERS = 1 << 23

# Fixed headers (first byte) of the packets the generator reads or writes.
CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK, PINGRESP = 2, 3, 4, 5, 6, 7, 9, 13
PINGREQ = b"\xc0\x00"
DISCONNECT = b"\xe0\x00"
PUBACK_HEAD = b"\x40\x02"
PUBREC_HEAD = b"\x50\x02"
PUBREL_HEAD = b"\x62\x02"
PUBCOMP_HEAD = b"\x70\x02"


def varint(n: int) -> bytes:
    """MQTT Remaining Length (1-4 bytes)."""
    if not 0 <= n < 1 << 28:
        raise ValueError(f"remaining length out of range: {n}")
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def utf8(s: str) -> bytes:
    """A length-prefixed UTF-8 string."""
    b = s.encode("utf-8")
    return struct.pack("!H", len(b)) + b


def connect(client_id: str, keepalive: int = 60, clean: bool = True) -> bytes:
    """MQTT 3.1.1 CONNECT: no will, no credentials."""
    body = utf8("MQTT") + struct.pack("!BBH", 4, 0x02 if clean else 0, keepalive) + utf8(client_id)
    return b"\x10" + varint(len(body)) + body


def subscribe(packet_id: int, topic_filter: str, qos: int = 0) -> bytes:
    """SUBSCRIBE with one filter."""
    body = struct.pack("!H", packet_id) + utf8(topic_filter) + bytes([qos])
    return b"\x82" + varint(len(body)) + body


def ack(head: bytes, packet_id: int) -> bytes:
    """PUBACK / PUBREC / PUBREL / PUBCOMP: ``head`` is one of the ``*_HEAD`` constants."""
    return head + struct.pack("!H", packet_id)


def publish(topic: str, payload: bytes, qos: int = 0, packet_id: int = 0, dup: bool = False) -> bytes:
    """One PUBLISH (used by tests and fakes; the generator uses ``PublishTemplate``)."""
    var = utf8(topic) + (struct.pack("!H", packet_id) if qos else b"")
    first = 0x30 | (qos << 1) | (0x08 if dup else 0)
    return bytes([first]) + varint(len(var) + len(payload)) + var + payload


def make_ident(pub: int, seq: int) -> int:
    """The 64-bit message identity carried in the payload."""
    return (pub << SEQ_BITS) | seq


def encode_payload(pub: int, seq: int, t_ns: int, size: int = MIN_PAYLOAD) -> bytes:
    """The payload of one message (see the module docstring)."""
    if size < MIN_PAYLOAD:
        raise ValueError(f"payload must be at least {MIN_PAYLOAD} bytes")
    return b"%016x%016x" % (make_ident(pub, seq), t_ns) + b"." * (size - MIN_PAYLOAD)


def decode_payload(data: bytes | str) -> tuple[int, int, int] | None:
    """(publisher, sequence, send time ns) from a payload, None if it is not one of ours."""
    if isinstance(data, str):
        data = data[:MIN_PAYLOAD].encode("ascii", "replace")
    if len(data) < MIN_PAYLOAD:
        return None
    try:
        ident = int(data[:16], 16)
        t_ns = int(data[16:MIN_PAYLOAD], 16)
    except ValueError:
        return None
    return ident >> SEQ_BITS, ident & SEQ_MASK, t_ns


_HEX = frozenset("0123456789abcdef")


def decode_event_payload(payload: str, encoding: str = "auto") -> tuple[int, int, int] | None:
    """Like ``decode_payload`` for a webhook event's ``payload`` string.

    ``plain``: the text itself; ``base64``: base64 of it; ``auto``: plain when the first 32
    characters are lowercase hex (base64 of ASCII hex never is: it starts with 'M' or 'Y').
    """
    if encoding == "auto":
        encoding = "plain" if len(payload) >= MIN_PAYLOAD and _HEX.issuperset(payload[:MIN_PAYLOAD]) else "base64"
    if encoding == "plain":
        return decode_payload(payload)
    try:
        raw = base64.b64decode(payload[:44] + "=" * (-min(len(payload), 44) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None
    return decode_payload(raw)


BLOCK = 256  # a chunk never crosses a multiple of BLOCK sequence numbers
SUFFIX = [b"%02x" % j for j in range(BLOCK)]  # the last two hex digits of an ident
_LOW = [bytes((j,)) for j in range(BLOCK)]


def packet_id(seq: int) -> int:
    """The packet id of sequence number ``seq`` (QoS 1/2): 256..65535, so ids 1..255 stay free.

    The low byte is ``seq % 256``, the high byte cycles 1..255: 65280 consecutive sequence
    numbers have distinct ids (the inflight window is far smaller).
    """
    return ((((seq >> 8) % 255) + 1) << 8) | (seq & 0xFF)


class PublishTemplate:
    """Pre-encoded PUBLISH packets of one publisher; only the send time is filled in per chunk.

    A chunk is up to 256 consecutive sequence numbers inside one block of 256. Their packets
    differ only in the last two hex digits of the ident (and, for QoS 1/2, the low byte of the
    packet id), so a chunk is one ``bytes.join`` of per-message suffixes with the constant
    part in between: about 10 ns per message, and one send time (taken just before the single
    ``transport.write`` of the chunk) for all its packets.
    """

    def __init__(self, topic: str, qos: int, payload_size: int, pub: int = 0) -> None:
        if payload_size < MIN_PAYLOAD:
            raise ValueError(f"payload must be at least {MIN_PAYLOAD} bytes (it carries id, sequence and time)")
        t = topic.encode("utf-8")
        var_len = 2 + len(t) + (2 if qos else 0)
        self.head = bytes([0x30 | (qos << 1)]) + varint(var_len + payload_size) + struct.pack("!H", len(t)) + t
        self.qos = qos
        self.pub = pub
        self.frame_len = len(self.head) + (2 if qos else 0) + payload_size
        self.pad = b"." * (payload_size - MIN_PAYLOAD)
        self._block = -1
        self._table: list[bytes] = []

    def chunk(self, seq: int, k: int, t_ns: int) -> bytes:
        """Packets for sequence numbers ``seq`` .. ``seq + k - 1`` (one block of 256 at most)."""
        a = seq & 0xFF
        if k < 1 or a + k > BLOCK:
            raise ValueError("a chunk must stay inside one block of 256 sequence numbers")
        block = make_ident(self.pub, seq) >> 8
        tail = b"%016x" % t_ns + self.pad
        if not self.qos:
            pre = self.head + b"%014x" % block
            return pre + (tail + pre).join(SUFFIX[a : a + k]) + tail
        if block != self._block:
            hex14 = b"%014x" % block
            self._table = [_LOW[j] + hex14 + SUFFIX[j] for j in range(BLOCK)]
            self._block = block
        pre = self.head + _LOW[packet_id(seq) >> 8]
        return pre + (tail + pre).join(self._table[a : a + k]) + tail

    def one(self, seq: int, t_ns: int, pid: int = 0) -> bytes:
        """One packet with an explicit packet id (the fault-injection path)."""
        payload = encode_payload(self.pub, seq, t_ns, len(self.pad) + MIN_PAYLOAD)
        if not self.qos:
            return self.head + payload
        return self.head + struct.pack("!H", pid) + payload
