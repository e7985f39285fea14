"""The fuzz targets, shared by the hypothesis tests (tests/fuzz/test_*.py) and the atheris driver
(tests/fuzz/atheris_fuzz.py, ``make fuzz``).

Each target takes bytes (and how to cut them into reads) and checks its invariants itself: a
violation is an ``AssertionError``, any other exception that escapes is a finding as well.

- ``codec``: ``mqhook.mqtt.codec.Decoder``, server side (CONNECT first, ``max_connect_size`` then
  ``max_packet_size``) or client side (a protocol level given up front). Whatever the bytes and
  however they are cut: ``decode`` returns packets and at most a ``ProtocolError`` (or
  ``MalformedPacket``) whose reason code is an MQTT 5 failure code; it raises nothing; the same
  bytes in one read or in many give the same packets and the same fault; the buffer of an
  unfinished packet stays below ``max(5, limit)`` bytes between reads (``limit + one read``
  while one is decoded), whatever remaining length a header declares.
- ``ws``: ``mqhook.server.ws.WsProtocol`` on a fake transport, loop and clock, with the real broker
  behind it: the HTTP upgrade, then WebSocket frames, then MQTT. ``data_received`` raises nothing,
  nothing is logged at ERROR (a bug caught by the connection's ``internal_error`` is logged so),
  and the MQTT decoder's buffer obeys the codec's bound.
- ``http``: ``mqhook.webhook.http.HttpConnection`` (the webhook client's reply parser, httptools)
  on a fake transport: a request is sent, the reply bytes arrive in reads; ``data_received`` and
  ``connection_lost`` raise nothing, and each request ends with a ``Response`` (status 100..999,
  body within ``reply_limit``) or one of the documented ``HttpError``s (``ResponseError``,
  ``ServerDisconnectedError``); a kept connection carries the next request.

``*_one(buf)`` decode an opaque input (the first bytes choose options and the cutting) for atheris
and for hypothesis' raw-bytes tests; ``seeds(target)`` are starting inputs for atheris' corpus.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator, Sequence
from typing import Any

from mqhook.broker.broker import Broker
from mqhook.broker.settings import MqttConfig
from mqhook.broker.stats import Stats
from mqhook.errors import MalformedPacket, ProtocolError
from mqhook.mqtt import packets as P
from mqhook.mqtt import reason as R
from mqhook.mqtt.codec import Decoder
from mqhook.mqtt.encode import encode
from mqhook.mqtt.wire import MAX_VARINT
from mqhook.server.listeners import ListenerStats
from mqhook.server.ws import WsProtocol
from mqhook.webhook import http as H

PACKET_CLASSES = (
    P.Connect,
    P.Connack,
    P.Publish,
    P.Puback,
    P.Pubrec,
    P.Pubrel,
    P.Pubcomp,
    P.Subscribe,
    P.Suback,
    P.Unsubscribe,
    P.Unsuback,
    P.Pingreq,
    P.Pingresp,
    P.Disconnect,
    P.Auth,
)
# The reason codes a decoder fault may carry: the failures of MQTT 5's table (section 2.4).
FAULT_CODES = frozenset(code for code in R.NAMES if code >= R.FAILURE)


# -- cutting a stream into reads ----------------------------------------------------------------
def cuts_from(pattern: int, size: int) -> list[int]:
    """Read boundaries from one byte: 0 = one read; else reads of 1..16 bytes in a cycle the byte chooses."""
    if not pattern or size <= 1:
        return []
    step = (pattern % 16) + 1
    out: list[int] = []
    pos = 0
    i = 0
    while True:
        pos += step if pattern & 0x80 else ((i * pattern) % step) + 1
        if pos >= size:
            return out
        out.append(pos)
        i += 1


def chunks(data: bytes, cuts: Sequence[int]) -> list[bytes]:
    """``data`` cut at the sorted, distinct positions in ``cuts`` (out-of-range ones ignored)."""
    points = sorted({c for c in cuts if 0 < c < len(data)})
    out = []
    start = 0
    for c in points:
        out.append(data[start:c])
        start = c
    out.append(data[start:])
    return [c for c in out if c] or [b""]


# -- packets as comparable values -------------------------------------------------------------------
def shape(value: Any) -> Any:
    """A packet (or a part of one) as plain tuples, lists and dicts: packets have no ``__eq__``."""
    if isinstance(value, (*PACKET_CLASSES, P.Will, P.Subscription)):
        slots = [s for cls in type(value).__mro__ for s in getattr(cls, "__slots__", ())]
        return (type(value).__name__, tuple((s, shape(getattr(value, s))) for s in sorted(set(slots))))
    if isinstance(value, list | tuple):
        return [shape(v) for v in value]
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    return value


# -- the codec ---------------------------------------------------------------------------------------
def _bound(decoder: Decoder) -> int:
    """The size an unfinished packet's bytes stay below between reads."""
    limit = decoder.max_packet_size
    if decoder.protocol_level is None:
        limit = min(limit, decoder.max_connect_size)
    return max(5, limit)


def decode_reads(
    reads: Sequence[bytes],
    *,
    level: int | None = None,
    max_packet_size: int = MAX_VARINT,
    max_connect_size: int = MAX_VARINT,
) -> tuple[list[Any], ProtocolError | None]:
    """Feed ``reads`` to one decoder, checking the invariants after each: (packets, fault)."""
    decoder = Decoder(max_packet_size, protocol_level=level, max_connect_size=max_connect_size)
    out: list[Any] = []
    for data in reads:
        bound = _bound(decoder)
        packets, fault = decoder.decode(data)  # anything raised here is a finding
        for packet in packets:
            assert isinstance(packet, PACKET_CLASSES), packet
        out.extend(packets)
        if fault is not None:
            assert isinstance(fault, ProtocolError), fault
            assert fault.reason_code in FAULT_CODES, (fault.reason_code, fault)
            if isinstance(fault, MalformedPacket):
                assert fault.reason_code == R.MALFORMED_PACKET
            again = decoder.decode(b"\x30\x00")  # a broken decoder stays broken
            assert again == ([], fault), again
            return out, fault
        buffered = len(decoder._buf)
        bound = max(bound, _bound(decoder))  # after the CONNECT, max_packet_size applies
        assert buffered <= bound + len(data), (buffered, bound, len(data))
        assert buffered < _bound(decoder), f"{buffered} bytes buffered between reads; bound {_bound(decoder)}"
    return out, None


def check_codec(
    data: bytes,
    cuts: Sequence[int],
    *,
    level: int | None = None,
    max_packet_size: int = MAX_VARINT,
    max_connect_size: int = MAX_VARINT,
) -> tuple[list[Any], ProtocolError | None]:
    """``data`` in one read and cut at ``cuts``: the invariants hold and both give the same result."""
    kw: dict[str, Any] = {"level": level, "max_packet_size": max_packet_size, "max_connect_size": max_connect_size}
    whole, fault = decode_reads([data], **kw)
    split, split_fault = decode_reads(chunks(data, cuts), **kw)
    assert shape(split) == shape(whole), "the cutting changed the packets"
    assert (type(split_fault), getattr(split_fault, "reason_code", None)) == (
        type(fault),
        getattr(fault, "reason_code", None),
    ), (split_fault, fault)
    return whole, fault


_LEVELS = (None, 4, 5, None)
_PACKET_SIZES = (MAX_VARINT, 1 << 20, 4096, 64)
_CONNECT_SIZES = (MAX_VARINT, 65536, 256, 16)


def codec_one(buf: bytes) -> None:
    """Opaque input: byte 0 chooses the side and level (bits 0-1), max_packet_size (bits 2-3) and
    max_connect_size (bits 4-5); byte 1 the cutting; the rest is the stream."""
    if len(buf) < 2:
        return
    opts, pattern, data = buf[0], buf[1], buf[2:]
    check_codec(
        data,
        cuts_from(pattern, len(data)),
        level=_LEVELS[opts & 3],
        max_packet_size=_PACKET_SIZES[(opts >> 2) & 3],
        max_connect_size=_CONNECT_SIZES[(opts >> 4) & 3],
    )


# -- the WebSocket edge -------------------------------------------------------------------------------
class _Handle:
    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeLoop:
    """The loop of ``MqttProtocol`` and the clock of the broker: ``call_soon`` callbacks run when
    ``run_ready`` says; timers never fire (the harness ends first)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.ready: list[tuple[Any, tuple[Any, ...]]] = []

    def time(self) -> float:
        return self.now

    def call_soon(self, callback: Any, *args: Any) -> _Handle:
        self.ready.append((callback, args))
        return _Handle()

    def call_later(self, delay: float, callback: Any, *args: Any) -> _Handle:
        return _Handle()

    def call_at(self, when: float, callback: Any, *args: Any) -> _Handle:
        return _Handle()

    def run_ready(self, limit: int = 1000) -> None:
        for _ in range(limit):
            if not self.ready:
                return
            callback, args = self.ready.pop(0)
            callback(*args)


class FakeTransport:
    """What ``MqttProtocol`` and ``HttpConnection`` use of an asyncio transport."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closing = False
        self.aborted = False
        self.reading = True
        self.eof = False

    def write(self, data: bytes) -> None:
        assert not self.closing, "written after close"
        self.written.append(bytes(data))

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = self.aborted = True

    def is_closing(self) -> bool:
        return self.closing

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof = True

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8083)}.get(name, default)


class _Errors(logging.Handler):
    """Records ERROR logs of mqhook (``Connection.internal_error`` logs a bug so)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


_ERRORS = _Errors()
logging.getLogger("mqhook").addHandler(_ERRORS)
logging.getLogger("mqhook").setLevel(logging.INFO)  # INFO passes through to the handler's level check
logging.getLogger("mqhook").propagate = False  # a fuzz run logs a refusal per input: keep them off stderr

WS_PATH = "/mqtt"
WS_MAX_PACKET = 4096


def ws_handshake(path: str = WS_PATH, subprotocols: Sequence[str] = ("mqtt",)) -> bytes:
    """A client's upgrade request (a fixed key: a fuzz input must mean the same thing every time)."""
    lines = [
        f"GET {path} HTTP/1.1",
        "Host: 127.0.0.1",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
    ]
    if subprotocols:
        lines.append("Sec-WebSocket-Protocol: " + ", ".join(subprotocols))
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


_OPCODES = {"bytes": 0x2, "text": 0x1, "ping": 0x9, "close": 0x8}


def ws_frame(opcode: int, payload: bytes, mask: bytes = b"\x1f\x2e\x3d\x4c", fin: bool = True) -> bytes:
    """One client frame (RFC 6455 section 5.2), masked with ``mask``."""
    size = len(payload)
    if size < 126:
        head = bytes((0x80 * fin | opcode, 0x80 | size))
    elif size < 1 << 16:
        head = bytes((0x80 * fin | opcode, 0x80 | 126)) + size.to_bytes(2, "big")
    else:
        head = bytes((0x80 * fin | opcode, 0x80 | 127)) + size.to_bytes(8, "big")
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def ws_frames(messages: Sequence[tuple[str, bytes]]) -> bytes:
    """Client frames (kind "bytes", "text", "ping", "close"), each a whole message."""
    out = bytearray()
    for kind, data in messages:
        if kind == "close":
            data = (1000).to_bytes(2, "big") + data[:20]
        elif kind == "ping":
            data = data[:125]
        out += ws_frame(_OPCODES[kind], data)
    return bytes(out)


def make_ws() -> tuple[WsProtocol, FakeTransport, FakeLoop, Broker]:
    loop = FakeLoop()
    config = MqttConfig(max_packet_size=WS_MAX_PACKET, max_connect_size=1024)
    broker = Broker(config, Stats(), loop)
    listener = ListenerStats("ws:fuzz", "ws", "127.0.0.1:8083", 0, WS_PATH)
    proto = WsProtocol(broker, loop, listener, path=WS_PATH)  # type: ignore[arg-type]
    transport = FakeTransport()
    proto.connection_made(transport)  # type: ignore[arg-type]
    return proto, transport, loop, broker


def check_ws(data: bytes, cuts: Sequence[int], handshake: bytes = b"") -> FakeTransport:
    """Feed ``handshake`` (in a read of its own: a client waits for the 101 before it sends frames,
    RFC 6455 section 4.1), then ``data`` in reads, to a fresh ``WsProtocol``; check its invariants;
    return the transport."""
    before = len(_ERRORS.records)
    proto, transport, loop, _ = make_ws()
    reads = ([handshake] if handshake else []) + chunks(data, cuts)
    for chunk in reads:
        if transport.closing:
            break  # asyncio delivers nothing after close
        if transport.reading:
            proto.data_received(chunk)  # anything raised here is a finding
        loop.run_ready()
        if proto._upgraded:
            buffered = len(proto.decoder._buf)
            assert buffered < _bound(proto.decoder) + len(chunk), buffered
    proto.connection_lost(None)
    loop.run_ready()
    errors = _ERRORS.records[before:]
    assert not errors, [r.getMessage() for r in errors]
    return transport


def ws_one(buf: bytes) -> None:
    """Opaque input: byte 0 bit 0 puts a valid upgrade request first (the rest are frames), the
    other bits choose the cutting; the rest is what the client sends."""
    if not buf:
        return
    opts, data = buf[0], buf[1:]
    check_ws(data, cuts_from(opts >> 1, len(data)), ws_handshake() if opts & 1 else b"")


# -- the webhook client's reply parser ---------------------------------------------------------------
_HTTP_LOOP: asyncio.AbstractEventLoop | None = None
REPLY_LIMITS = (65536, 64)
REQUEST = b"POST /hook HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\n\r\n{}"
MAX_REQUESTS = 8


def _outcome(conn: H.HttpConnection) -> Any:
    fut = conn.fut
    assert fut is not None and fut.done(), "the request neither finished nor failed"
    exc = fut.exception()
    if exc is not None:
        assert isinstance(exc, H.ResponseError | H.ServerDisconnectedError), repr(exc)
        return type(exc).__name__
    response = fut.result()
    assert isinstance(response, H.Response)
    assert 100 <= response.status <= 999, response.status
    assert response.version in (b"HTTP/1.1", b"HTTP/1.0"), response.version
    assert isinstance(response.body, bytes) and len(response.body) <= conn.reply_limit
    return (response.status, response.body)


async def _http(reads: list[bytes], bodiless: bool, keep: bool, reply_limit: int) -> list[Any]:
    outcomes: list[Any] = []
    conn = H.HttpConnection(reply_limit)
    transport = FakeTransport()
    conn.connection_made(transport)  # type: ignore[arg-type]
    deadline = asyncio.get_running_loop().time() + 3600
    conn.send(REQUEST, deadline, keep, bodiless)
    counted: Any = None  # the future whose outcome is in ``outcomes``
    for chunk in reads:
        if transport.closing:
            break  # asyncio delivers nothing after close
        conn.data_received(chunk)  # anything raised here is a finding
        fut = conn.fut
        if fut is not None and fut.done():
            outcomes.append(_outcome(conn))
            counted = fut
            if len(outcomes) >= MAX_REQUESTS or not conn.release():
                break
            conn.send(REQUEST, deadline, keep, bodiless)  # the kept connection carries the next one
    if not transport.closing:
        assert conn.eof_received() is False  # the server closes after its last byte
    conn.connection_lost(None)  # anything raised here is a finding
    fut = conn.fut
    if fut is not None and fut is not counted:
        outcomes.append(_outcome(conn))  # a close ends every request: a reply or an error
    return outcomes


def check_http_reply(
    data: bytes, cuts: Sequence[int], *, bodiless: bool = False, keep: bool = True, reply_limit: int = 65536
) -> list[Any]:
    """Send one request on an ``HttpConnection``, feed ``data`` as the reply (in reads), then the
    server's close: each request (one more per kept connection) has a documented outcome."""
    global _HTTP_LOOP
    if _HTTP_LOOP is None:
        _HTTP_LOOP = asyncio.new_event_loop()
    return _HTTP_LOOP.run_until_complete(_http(chunks(data, cuts), bodiless, keep, reply_limit))


def http_one(buf: bytes) -> None:
    """Opaque input: byte 0 bit 0 a HEAD request, bit 1 Connection: close, bit 2 a 64-byte reply
    limit; byte 1 the cutting; the rest is the reply."""
    if len(buf) < 2:
        return
    opts, pattern, data = buf[0], buf[1], buf[2:]
    check_http_reply(
        data,
        cuts_from(pattern, len(data)),
        bodiless=bool(opts & 1),
        keep=not opts & 2,
        reply_limit=REPLY_LIMITS[(opts >> 2) & 1],
    )


# -- seeds --------------------------------------------------------------------------------------------
def _codec_seed_streams() -> Iterator[tuple[int, bytes]]:
    for level in (4, 5):
        props = {"User-Property": [("k", "v")]} if level == 5 else {}
        connect = encode(P.Connect("fuzz", proto_level=level, will=P.Will("w/t", b"bye", 1)), level)
        body = [
            P.Publish("a/b", b"payload", 1, packet_id=1, properties=dict(props)),
            P.Publish("a/b", b"", 0),
            P.Puback(1),
            P.Pubrec(2),
            P.Pubrel(2),
            P.Pubcomp(2),
            P.Subscribe(3, [P.Subscription("a/#", 1)], {"Subscription-Identifier": 5} if level == 5 else {}),
            P.Unsubscribe(4, ["a/#"]),
            P.Pingreq(),
        ]
        if level == 5:
            body += [P.Disconnect(0x04, {"Reason-String": "bye"}), P.Auth(0x18, {"Authentication-Method": "x"})]
        stream = connect + b"".join(encode(p, level) for p in body)
        yield 0, stream  # server side, no limits
        client = [P.Connack(True, 0, {"Maximum-QoS": 1} if level == 5 else {}), P.Suback(3, [0, 1]), P.Unsuback(4, [0])]
        yield (1 if level == 4 else 2), b"".join(encode(p, level) for p in client)
    yield 0b1000, b"\x10\xff\xff\xff\x7f"  # a 256 MB CONNECT announced
    yield 0b0101, b"\x30\xff\xff\xff\x7f\x00"  # a 256 MB PUBLISH announced, 1 MB max_packet_size


def seeds(target: str) -> list[bytes]:
    """Starting inputs of ``target`` in its opaque format."""
    if target == "codec":
        return [bytes((opts, pattern)) + data for opts, data in _codec_seed_streams() for pattern in (0, 3, 0x81)]
    if target == "ws":
        connect = encode(P.Connect("fuzz", proto_level=5), 5)
        publish = encode(P.Publish("a/b", b"x" * 300, 1, packet_id=1), 5)
        frames = ws_frames(
            [("bytes", connect), ("bytes", publish[:100]), ("bytes", publish[100:]), ("ping", b"p"), ("close", b"")]
        )
        text = ws_frames([("bytes", connect), ("text", b"hello")])
        return [
            b"\x00" + ws_handshake() + frames,
            b"\x01" + frames,
            b"\x07" + frames,
            b"\x01" + text,
            b"\x00" + ws_handshake(path="/other"),
            b"\x00" + ws_handshake(subprotocols=()),
            b"\x00GET /mqtt HTTP/1.1\r\nHost: x\r\n\r\n",
        ]
    if target == "http":
        replies = [
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            b"HTTP/1.1 503 Busy\r\nTransfer-Encoding: chunked\r\nRetry-After: 7\r\n\r\n"
            b"5;e=1\r\nhello\r\n0\r\nT: t\r\n\r\n",
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
            b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok",
            b"HTTP/1.1 200 OK\r\n\r\nuntil close",
            b"HTTP/1.1 101 Switching\r\nUpgrade: x\r\n\r\nrest",
            b"HTTP/1.1 200 OK\nContent-Length: 2\n\nokHTTP/1.1 500 E\r\nContent-Length: 0\r\n\r\n",
        ]
        return [bytes((opts, pattern)) + r for r in replies for opts in (0, 1, 4) for pattern in (0, 5)]
    raise ValueError(f"unknown fuzz target {target!r}; expected codec, ws or http")


TARGETS = {"codec": codec_one, "ws": ws_one, "http": http_one}
