"""A tiny hand-written MQTT client over a raw socket, for exact-byte and malformed-input tests.

Independent of mqhook's codec on purpose: packets are built with struct from the spec
(MQTT 3.1.1 and 5.0, chapter 2 and 3) and parsed just enough to assert on them.
"""

from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass, field

# Control packet types (high nibble of the first byte)
CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT, AUTH = 8, 9, 10, 11, 12, 13, 14, 15
_TYPE_NAMES = ["CONNECT", "CONNACK", "PUBLISH", "PUBACK", "PUBREC", "PUBREL", "PUBCOMP", "SUBSCRIBE", "SUBACK"]
_TYPE_NAMES += ["UNSUBSCRIBE", "UNSUBACK", "PINGREQ", "PINGRESP", "DISCONNECT", "AUTH"]
NAMES = dict(enumerate(_TYPE_NAMES, start=1))

# v5 property identifiers -> wire type
P_PAYLOAD_FORMAT = 0x01
P_MESSAGE_EXPIRY = 0x02
P_CONTENT_TYPE = 0x03
P_RESPONSE_TOPIC = 0x08
P_CORRELATION_DATA = 0x09
P_SUBSCRIPTION_ID = 0x0B
P_SESSION_EXPIRY = 0x11
P_ASSIGNED_CLIENT_ID = 0x12
P_SERVER_KEEP_ALIVE = 0x13
P_REASON_STRING = 0x1F
P_RECEIVE_MAXIMUM = 0x21
P_TOPIC_ALIAS_MAXIMUM = 0x22
P_TOPIC_ALIAS = 0x23
P_MAXIMUM_QOS = 0x24
P_RETAIN_AVAILABLE = 0x25
P_USER_PROPERTY = 0x26
P_MAXIMUM_PACKET_SIZE = 0x27
P_WILDCARD_SUB_AVAILABLE = 0x28
P_SUB_ID_AVAILABLE = 0x29
P_SHARED_SUB_AVAILABLE = 0x2A
P_WILL_DELAY = 0x18

BYTE, U16, U32, VARINT, BIN, STR, PAIR = "byte", "u16", "u32", "varint", "bin", "str", "pair"
PROP_TYPES = {
    **dict.fromkeys([0x01, 0x17, 0x19, 0x24, 0x25, 0x28, 0x29, 0x2A], BYTE),
    **dict.fromkeys([0x13, 0x21, 0x22, 0x23], U16),
    **dict.fromkeys([0x02, 0x11, 0x18, 0x27], U32),
    0x0B: VARINT,
    **dict.fromkeys([0x09, 0x16], BIN),
    **dict.fromkeys([0x03, 0x08, 0x12, 0x15, 0x1A, 0x1C, 0x1F], STR),
    0x26: PAIR,
}


# ---------------------------------------------------------------------------- encoding
def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def u16(n: int) -> bytes:
    return struct.pack("!H", n)


def u32(n: int) -> bytes:
    return struct.pack("!I", n)


def binary(b: bytes) -> bytes:
    return u16(len(b)) + b


def utf8(s: str | bytes) -> bytes:
    return binary(s.encode() if isinstance(s, str) else s)


def props(items: list[tuple[int, object]] | None = None) -> bytes:
    """Encode a v5 property block (length varint included)."""
    body = bytearray()
    for pid, value in items or []:
        kind = PROP_TYPES[pid]
        body += varint(pid)
        if kind == BYTE:
            body.append(int(value))  # type: ignore[call-overload]
        elif kind == U16:
            body += u16(int(value))  # type: ignore[call-overload]
        elif kind == U32:
            body += u32(int(value))  # type: ignore[call-overload]
        elif kind == VARINT:
            body += varint(int(value))  # type: ignore[call-overload]
        elif kind == BIN:
            body += binary(value)  # type: ignore[arg-type]
        elif kind == STR:
            body += utf8(value)  # type: ignore[arg-type]
        else:
            k, v = value  # type: ignore[misc]
            body += utf8(k) + utf8(v)
    return varint(len(body)) + bytes(body)


def packet(first_byte: int, body: bytes) -> bytes:
    return bytes([first_byte]) + varint(len(body)) + body


@dataclass
class Will:
    topic: str
    payload: bytes = b""
    qos: int = 0
    retain: bool = False
    props: list[tuple[int, object]] = field(default_factory=list)


def connect_packet(
    client_id: str = "",
    version: int = 5,
    clean: bool = True,
    keepalive: int = 60,
    properties: list[tuple[int, object]] | None = None,
    will: Will | None = None,
    username: str | None = None,
    password: bytes | None = None,
    proto_name: str | None = None,
) -> bytes:
    name = proto_name if proto_name is not None else ("MQIsdp" if version == 3 else "MQTT")
    flags = 0x02 if clean else 0
    if will:
        flags |= 0x04 | (will.qos << 3) | (0x20 if will.retain else 0)
    if username is not None:
        flags |= 0x80
    if password is not None:
        flags |= 0x40
    var = utf8(name) + bytes([version, flags]) + u16(keepalive)
    if version == 5:
        var += props(properties)
    pay = utf8(client_id)
    if will:
        if version == 5:
            pay += props(will.props)
        pay += utf8(will.topic) + binary(will.payload)
    if username is not None:
        pay += utf8(username)
    if password is not None:
        pay += binary(password)
    return packet(0x10, var + pay)


def publish_packet(
    topic: str | bytes,
    payload: bytes = b"",
    qos: int = 0,
    pid: int | None = None,
    retain: bool = False,
    dup: bool = False,
    version: int = 5,
    properties: list[tuple[int, object]] | None = None,
) -> bytes:
    first = 0x30 | (0x08 if dup else 0) | (qos << 1) | (0x01 if retain else 0)
    var = utf8(topic)
    if qos:
        var += u16(pid if pid is not None else 1)
    if version == 5:
        var += props(properties)
    return packet(first, var + payload)


def subscribe_packet(
    pid: int,
    filters: list[tuple[str, int]],
    version: int = 5,
    properties: list[tuple[int, object]] | None = None,
) -> bytes:
    """``filters`` is a list of (topic filter, options byte); for v3 the options byte is the QoS."""
    body = u16(pid)
    if version == 5:
        body += props(properties)
    for flt, opts in filters:
        body += utf8(flt) + bytes([opts])
    return packet(0x82, body)


def sub_options(qos: int = 0, no_local: bool = False, rap: bool = False, rh: int = 0) -> int:
    return qos | (0x04 if no_local else 0) | (0x08 if rap else 0) | (rh << 4)


def unsubscribe_packet(pid: int, filters: list[str], version: int = 5) -> bytes:
    body = u16(pid) + (props() if version == 5 else b"")
    for flt in filters:
        body += utf8(flt)
    return packet(0xA2, body)


def ack_packet(kind: int, pid: int, version: int = 5, rc: int = 0) -> bytes:
    """PUBACK / PUBREC / PUBREL / PUBCOMP."""
    first = (kind << 4) | (0x02 if kind == PUBREL else 0)
    body = u16(pid)
    if version == 5 and rc:
        body += bytes([rc])
    return packet(first, body)


def disconnect_packet(version: int = 5, rc: int = 0, properties: list[tuple[int, object]] | None = None) -> bytes:
    if version != 5 or (rc == 0 and not properties):
        return b"\xe0\x00"
    return packet(0xE0, bytes([rc]) + props(properties))


PINGREQ_BYTES = b"\xc0\x00"


# ---------------------------------------------------------------------------- decoding
class Props(list):
    """Decoded v5 properties: an ordered list of (id, value); ``get`` / ``getall`` by id."""

    def get(self, pid: int, default: object = None) -> object:
        for k, v in self:
            if k == pid:
                return v
        return default

    def getall(self, pid: int) -> list:
        return [v for k, v in self if k == pid]


def read_varint(buf: bytes, off: int) -> tuple[int, int]:
    mult, value = 1, 0
    for i in range(4):
        b = buf[off + i]
        value += (b & 0x7F) * mult
        mult *= 128
        if not b & 0x80:
            return value, off + i + 1
    raise ValueError("malformed varint")


def read_utf8(buf: bytes, off: int) -> tuple[bytes, int]:
    (n,) = struct.unpack_from("!H", buf, off)
    return bytes(buf[off + 2 : off + 2 + n]), off + 2 + n


def read_props(buf: bytes, off: int) -> tuple[Props, int]:
    length, off = read_varint(buf, off)
    end = off + length
    out = Props()
    while off < end:
        pid, off = read_varint(buf, off)
        kind = PROP_TYPES[pid]
        value: object
        if kind == BYTE:
            value, off = buf[off], off + 1
        elif kind == U16:
            (value,), off = struct.unpack_from("!H", buf, off), off + 2
        elif kind == U32:
            (value,), off = struct.unpack_from("!I", buf, off), off + 4
        elif kind == VARINT:
            value, off = read_varint(buf, off)
        elif kind == BIN:
            value, off = read_utf8(buf, off)
        elif kind == STR:
            raw, off = read_utf8(buf, off)
            value = raw.decode()
        else:
            k, off = read_utf8(buf, off)
            v, off = read_utf8(buf, off)
            value = (k.decode(), v.decode())
        out.append((pid, value))
    return out, end


@dataclass
class Packet:
    first: int
    body: bytes

    @property
    def type(self) -> int:
        return self.first >> 4

    @property
    def flags(self) -> int:
        return self.first & 0x0F

    @property
    def name(self) -> str:
        return NAMES.get(self.type, f"type{self.type}")

    def __repr__(self) -> str:
        return f"<{self.name} flags={self.flags:#x} body={self.body[:64].hex()}>"


@dataclass
class Connack:
    session_present: bool
    rc: int
    props: Props


@dataclass
class Publish:
    topic: str
    payload: bytes
    qos: int
    dup: bool
    retain: bool
    pid: int | None
    props: Props


def parse_connack(p: Packet, version: int = 5) -> Connack:
    assert p.type == CONNACK, f"expected CONNACK, got {p!r}"
    pr = read_props(p.body, 2)[0] if version == 5 and len(p.body) > 2 else Props()
    return Connack(bool(p.body[0] & 1), p.body[1], pr)


def parse_publish(p: Packet, version: int = 5) -> Publish:
    assert p.type == PUBLISH, f"expected PUBLISH, got {p!r}"
    qos = (p.flags >> 1) & 3
    topic, off = read_utf8(p.body, 0)
    pid = None
    if qos:
        (pid,) = struct.unpack_from("!H", p.body, off)
        off += 2
    pr = Props()
    if version == 5:
        pr, off = read_props(p.body, off)
    return Publish(topic.decode(), bytes(p.body[off:]), qos, bool(p.flags & 8), bool(p.flags & 1), pid, pr)


def parse_ack(p: Packet, version: int = 5) -> tuple[int, int]:
    """(packet id, reason code) of PUBACK/PUBREC/PUBREL/PUBCOMP."""
    (pid,) = struct.unpack_from("!H", p.body, 0)
    rc = p.body[2] if version == 5 and len(p.body) > 2 else 0
    return pid, rc


def parse_suback(p: Packet, version: int = 5) -> tuple[int, list[int]]:
    """(packet id, reason codes) of SUBACK/UNSUBACK."""
    (pid,) = struct.unpack_from("!H", p.body, 0)
    off = 2
    if version == 5:
        off = read_props(p.body, off)[1]
    return pid, list(p.body[off:])


def parse_disconnect(p: Packet) -> tuple[int, Props]:
    assert p.type == DISCONNECT, f"expected DISCONNECT, got {p!r}"
    if not p.body:
        return 0, Props()
    pr = read_props(p.body, 1)[0] if len(p.body) > 1 else Props()
    return p.body[0], pr


# ---------------------------------------------------------------------------- the client
class Closed(Exception):
    """The peer closed the connection."""


class RawClient:
    def __init__(
        self,
        host: str,
        port: int,
        version: int = 5,
        rcvbuf: int | None = None,
        nodelay: bool = True,
        timeout: float = 5.0,
    ) -> None:
        self.version = version
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if nodelay:
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.settimeout(timeout)
        self.sock.connect((host, port))
        self.buf = bytearray()
        self.eof = False

    @classmethod
    def to(cls, broker: object, version: int = 5, **kw: object) -> RawClient:
        return cls(broker.host, broker.mqtt_port, version=version, **kw)  # type: ignore[attr-defined, arg-type]

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def abort(self) -> None:
        """Close with RST (SO_LINGER 0): no DISCONNECT, no FIN handshake."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    # -- reading ------------------------------------------------------------------------
    def _fill(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no data from broker in time")
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError, ConnectionAbortedError):
            chunk = b""
        except TimeoutError as e:
            raise TimeoutError("no data from broker in time") from e
        if not chunk:
            self.eof = True
            raise Closed()
        self.buf += chunk

    def _try_parse(self) -> Packet | None:
        if len(self.buf) < 2:
            return None
        mult, length, i = 1, 0, 1
        while True:
            if i >= len(self.buf):
                return None
            b = self.buf[i]
            length += (b & 0x7F) * mult
            mult *= 128
            i += 1
            if not b & 0x80:
                break
            if i > 4:
                raise ValueError(f"broker sent a malformed remaining length: {bytes(self.buf[:8]).hex()}")
        if len(self.buf) < i + length:
            return None
        pkt = Packet(self.buf[0], bytes(self.buf[i : i + length]))
        del self.buf[: i + length]
        return pkt

    def recv(self, timeout: float = 5.0) -> Packet:
        """Next packet; raises Closed on EOF/reset, TimeoutError when nothing arrives in time."""
        deadline = time.monotonic() + timeout
        while True:
            pkt = self._try_parse()
            if pkt is not None:
                return pkt
            if self.eof:
                raise Closed()
            self._fill(deadline)

    def expect(self, ptype: int, timeout: float = 5.0) -> Packet:
        pkt = self.recv(timeout)
        assert pkt.type == ptype, f"expected {NAMES[ptype]}, got {pkt!r}"
        return pkt

    def recv_publish(self, timeout: float = 5.0) -> Publish:
        return parse_publish(self.expect(PUBLISH, timeout), self.version)

    def wait_closed(self, timeout: float = 5.0) -> list[Packet]:
        """Read until the broker closes the connection; returns the packets received before.
        Fails the test if the connection is still open after ``timeout``."""
        got: list[Packet] = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                got.append(self.recv(max(0.0, deadline - time.monotonic())))
            except Closed:
                return got
            except TimeoutError:
                raise AssertionError(f"broker did not close the connection within {timeout}s; got {got}") from None

    def assert_silent(self, duration: float) -> None:
        """Nothing arrives (and no close) for ``duration`` seconds."""
        try:
            pkt = self.recv(duration)
        except TimeoutError:
            return
        except Closed:
            raise AssertionError("connection closed unexpectedly") from None
        raise AssertionError(f"unexpected packet {pkt!r}")

    # -- conveniences ---------------------------------------------------------------------
    def connect(self, client_id: str = "", **kw: object) -> Connack:
        self.send(connect_packet(client_id, version=self.version, **kw))  # type: ignore[arg-type]
        return parse_connack(self.expect(CONNACK), self.version)

    def subscribe(
        self,
        filters: list[tuple[str, int]] | str,
        qos: int = 0,
        pid: int = 1,
        properties: list[tuple[int, object]] | None = None,
    ) -> list[int]:
        if isinstance(filters, str):
            filters = [(filters, qos)]
        self.send(subscribe_packet(pid, filters, self.version, properties))
        rpid, codes = parse_suback(self.expect(SUBACK), self.version)
        assert rpid == pid
        return codes

    def publish(self, topic: str, payload: bytes = b"", qos: int = 0, pid: int = 1, **kw: object) -> None:
        """Publish and, for QoS 1/2, complete the flow (PUBACK, or PUBREC/PUBREL/PUBCOMP)."""
        self.send(publish_packet(topic, payload, qos=qos, pid=pid, version=self.version, **kw))  # type: ignore[arg-type]
        if qos == 1:
            assert parse_ack(self.expect(PUBACK), self.version)[0] == pid
        elif qos == 2:
            assert parse_ack(self.expect(PUBREC), self.version)[0] == pid
            self.send(ack_packet(PUBREL, pid, self.version))
            assert parse_ack(self.expect(PUBCOMP), self.version)[0] == pid

    def ping(self, timeout: float = 5.0) -> None:
        self.send(PINGREQ_BYTES)
        pkt = self.expect(PINGRESP, timeout)
        assert pkt.body == b""

    def disconnect(self, rc: int = 0) -> None:
        self.send(disconnect_packet(self.version, rc))
