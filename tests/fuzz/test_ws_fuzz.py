"""The WebSocket edge (``mqhook.server.ws.WsProtocol``: the HTTP upgrade and frames, through wsproto)
under hostile bytes, on a fake transport with the real broker behind it. ``harness.check_ws`` holds
the invariants: ``data_received`` raises nothing, nothing is logged at ERROR (no bug reached the
connection's ``internal_error``), the MQTT decoder's buffer stays bounded."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from mqhook.mqtt import packets as P
from mqhook.mqtt.encode import encode

from .harness import check_ws, make_ws, ws_frames, ws_handshake, ws_one
from .strategies import any_packet, fuzz_settings, mutate

HEADER_VALUES = st.sampled_from(
    [b"127.0.0.1", b"\xff\xfe", b"xn--", b"a..b", b"a" * 70, b"mqtt", b"mqtt, \xc3\x28", b"Upgrade", b"13", b""]
)
HEADER_NAMES = st.sampled_from(
    [
        b"Host",
        b"Connection",
        b"Upgrade",
        b"Sec-WebSocket-Protocol",
        b"Sec-WebSocket-Extensions",
        b"Sec-WebSocket-Version",
    ]
)


@fuzz_settings(300)
@given(buf=st.binary(max_size=400))
def test_raw_bytes(buf: bytes) -> None:
    """The atheris target's input format (bit 0: a valid upgrade first), from hypothesis."""
    ws_one(buf)


@fuzz_settings(200)
@given(data=st.data())
def test_mutated_upgrade_requests(data: st.DataObject) -> None:
    """An upgrade request with headers replaced by odd values (not IDNA, not ASCII, empty), then mutated."""
    request = ws_handshake()
    head, _, _ = request.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    for _ in range(data.draw(st.integers(0, 3))):
        lines.append(data.draw(HEADER_NAMES) + b": " + data.draw(HEADER_VALUES))
    if data.draw(st.booleans()):
        i = data.draw(st.integers(1, len(lines) - 1))
        name = lines[i].partition(b":")[0]
        lines[i] = name + b": " + data.draw(HEADER_VALUES)
    request = b"\r\n".join(lines) + b"\r\n\r\n"
    if data.draw(st.booleans()):
        request = data.draw(mutate(request))
    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(request) - 1)), max_size=6)))
    check_ws(request, cuts)


@st.composite
def _messages(draw: st.DrawFn) -> list[tuple[str, bytes]]:
    level = draw(st.sampled_from([4, 5]))
    stream = encode(P.Connect("ws", proto_level=level), level)
    stream += b"".join(encode(p, level) for p in draw(st.lists(any_packet(level), max_size=4)))
    if draw(st.booleans()):
        stream = draw(mutate(stream))
    out: list[tuple[str, bytes]] = []
    pos = 0
    while pos < len(stream):  # the MQTT stream cut across binary frames
        step = draw(st.integers(1, max(1, len(stream) - pos)))
        out.append(("bytes", stream[pos : pos + step]))
        pos += step
    extra = st.tuples(st.sampled_from(["bytes", "text", "ping", "close"]), st.binary(max_size=40))
    for _ in range(draw(st.integers(0, 2))):
        out.insert(draw(st.integers(0, len(out))), draw(extra))
    return out


@fuzz_settings(300)
@given(data=st.data())
def test_frames_of_mutated_mqtt_after_a_valid_upgrade(data: st.DataObject) -> None:
    """Masked frames (binary, with text, ping and close ones among them) carrying a CONNECT and
    packets; the frame bytes mutated or not; in any reads."""
    frames = ws_frames(data.draw(_messages()))
    if data.draw(st.booleans()):
        frames = data.draw(mutate(frames))
    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(frames) - 1)), max_size=8)))
    check_ws(frames, cuts, ws_handshake())


# -- regressions ----------------------------------------------------------------------------------
def test_an_upgrade_whose_host_is_not_idna_is_refused_with_400_not_an_exception() -> None:
    """Found by the fuzzer: wsproto decodes Host as IDNA and raised UnicodeError out of
    data_received (uvloop logged a fatal error and dropped the socket, uncounted)."""
    for host in (b"127.0.\xff\xff\x06", b"\xc3\xa9.example"):
        request = ws_handshake().replace(b"Host: 127.0.0.1", b"Host: " + host)
        assert host in request
        proto, transport, _, _ = make_ws()
        proto.data_received(request)
        reply = b"".join(transport.written)
        assert reply.startswith(b"HTTP/1.1 400 "), reply
        assert transport.closing
        assert proto.listener is not None and proto.listener.refused["ws_upgrade"] == 1


def test_an_upgrade_with_a_non_ascii_subprotocol_or_connection_is_refused_with_400() -> None:
    for old, new in (
        (b"Sec-WebSocket-Protocol: mqtt", b"Sec-WebSocket-Protocol: mqtt, \xc3\xa9"),
        (b"Connection: Upgrade", b"Connection: Upgrade, \xff"),
    ):
        request = ws_handshake().replace(old, new)
        assert new in request
        proto, transport, _, _ = make_ws()
        proto.data_received(request)
        assert b"".join(transport.written).startswith(b"HTTP/1.1 400 ")
        assert transport.closing
