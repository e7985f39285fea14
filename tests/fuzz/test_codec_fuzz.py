"""The MQTT decoder under hostile bytes: valid packets built from strategies, then mutated (cut,
bits flipped, wrong lengths, bad properties, bad UTF-8, huge remaining lengths), in any chunking;
and raw bytes. ``harness.check_codec`` holds the invariants: packets or a ProtocolError /
MalformedPacket with an MQTT failure code, nothing else raised, the same result however the bytes
are cut, the buffer of an unfinished packet bounded by the limit in force."""

from __future__ import annotations

import tracemalloc

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mqhook.errors import ProtocolError
from mqhook.mqtt import packets as P
from mqhook.mqtt import reason as R
from mqhook.mqtt.codec import Decoder
from mqhook.mqtt.encode import encode
from mqhook.mqtt.wire import MAX_VARINT, encode_varint

from .harness import check_codec, codec_one
from .strategies import any_packet, connect, fuzz_settings, mutate

PACKET_SIZES = st.sampled_from([MAX_VARINT, 1 << 20, 4096, 256, 64, 16])
CONNECT_SIZES = st.sampled_from([MAX_VARINT, 65536, 256, 64])


def _cuts(data: st.DataObject, size: int) -> list[int]:
    return sorted(data.draw(st.sets(st.integers(1, max(1, size - 1)), max_size=12), label="cuts"))


@fuzz_settings(500)
@given(data=st.data(), level=st.sampled_from([3, 4, 5]))
def test_a_server_side_decoder_given_mutated_connect_and_packets(data: st.DataObject, level: int) -> None:
    """What a broker reads: a CONNECT (max_connect_size), then anything (max_packet_size); any of
    them mutated, or the whole stream."""
    parts = [encode(data.draw(connect(level), label="connect"), level)]
    parts += [encode(p, level) for p in data.draw(st.lists(any_packet(5 if level == 5 else 4), max_size=4))]
    parts = [data.draw(mutate(p)) if data.draw(st.booleans()) else p for p in parts]
    stream = b"".join(parts)
    if data.draw(st.booleans()):
        stream = data.draw(mutate(stream), label="stream")
    check_codec(
        stream,
        _cuts(data, len(stream)),
        max_packet_size=data.draw(PACKET_SIZES),
        max_connect_size=data.draw(CONNECT_SIZES),
    )


@fuzz_settings(500)
@given(data=st.data(), level=st.sampled_from([4, 5]))
def test_a_decoder_that_knows_the_level_given_mutated_packets(data: st.DataObject, level: int) -> None:
    """What a client reads (CONNACK, SUBACK...) and what the broker reads after CONNECT."""
    parts = [encode(p, level) for p in data.draw(st.lists(any_packet(level), min_size=1, max_size=5))]
    parts = [data.draw(mutate(p)) if data.draw(st.booleans()) else p for p in parts]
    stream = b"".join(parts)
    check_codec(stream, _cuts(data, len(stream)), level=level, max_packet_size=data.draw(PACKET_SIZES))


@fuzz_settings(500)
@given(buf=st.binary(max_size=300))
def test_raw_bytes(buf: bytes) -> None:
    """The atheris target's input format (options, cutting, stream), from hypothesis."""
    codec_one(buf)


@fuzz_settings(100)
@given(buf=st.binary(max_size=200), level=st.sampled_from([4, 5]))
def test_raw_bytes_after_a_valid_connect(buf: bytes, level: int) -> None:
    check_codec(encode(P.Connect("c", proto_level=level), level) + buf, [1, 7, 20], max_packet_size=256)


# -- the 256 MB remaining length ------------------------------------------------------------------
HUGE = b"\xff\xff\xff\x7f"  # 268,435,455: the largest remaining length, 256 MB


@pytest.mark.parametrize(
    ("first", "level", "max_packet_size", "max_connect_size", "what"),
    [
        (0x10, None, 1 << 20, 65536, "CONNECT"),
        (0x10, None, MAX_VARINT, 65536, "CONNECT"),
        (0x30, 4, 1 << 20, 65536, "PUBLISH v4"),
        (0x30, 5, 1 << 20, 65536, "PUBLISH v5"),
        (0x82, 5, 65536, 65536, "SUBSCRIBE"),
    ],
)
@pytest.mark.parametrize("bytewise", [False, True])
def test_a_256mb_remaining_length_is_refused_at_once_and_nothing_is_allocated(
    first: int, level: int | None, max_packet_size: int, max_connect_size: int, what: str, bytewise: bool
) -> None:
    decoder = Decoder(max_packet_size, protocol_level=level, max_connect_size=max_connect_size)
    header = bytes((first,)) + HUGE
    tracemalloc.start()
    try:
        fault = None
        reads = [header[i : i + 1] for i in range(len(header))] if bytewise else [header]
        for i, chunk in enumerate(reads):
            packets, fault = decoder.decode(chunk)
            assert packets == []
            if i < len(reads) - 1:
                assert fault is None  # the header is not complete yet
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert isinstance(fault, ProtocolError) and fault.reason_code == R.PACKET_TOO_LARGE, (what, fault)
    assert peak < 64 * 1024, f"{peak} bytes allocated for a {what} announcing 256 MB"
    assert len(decoder._buf) <= len(header)


def test_a_256mb_packet_within_the_limit_holds_only_what_arrived() -> None:
    """With no limit below 256 MB (a client-side decoder's default: a packet of at most 268,435,455
    bytes in all) the decoder waits for the bytes: it holds what arrived, never the declared size."""
    decoder = Decoder(protocol_level=5)
    tracemalloc.start()
    try:
        assert decoder.decode(b"\x30" + encode_varint(MAX_VARINT - 5) + b"\x00\x01a\x00") == ([], None)
        read = b"x" * 65536
        for _ in range(16):  # 1 MB of the 256
            assert decoder.decode(read) == ([], None)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(decoder._buf) == 9 + 16 * 65536  # the header, the topic, the empty property block, the 1 MB
    assert peak < 4 * (1 << 20), f"peak {peak} bytes for 1 MB received"


@fuzz_settings(100)
@given(
    declared=st.integers(0, MAX_VARINT),
    max_packet_size=st.sampled_from([16, 64, 4096, 1 << 20]),
    level=st.sampled_from([4, 5]),
    read=st.integers(1, 8192),
)
def test_an_unfinished_packet_never_makes_the_buffer_exceed_the_limit(
    declared: int, max_packet_size: int, level: int, read: int
) -> None:
    """Whatever remaining length a PUBLISH declares, the bytes that wait stay below max_packet_size."""
    decoder = Decoder(max_packet_size, protocol_level=level)
    stream = b"\x30" + encode_varint(declared) + b"\x00\x01a" + b"p" * 20000
    for start in range(0, len(stream), read):
        _, fault = decoder.decode(stream[start : start + read])
        if fault is not None:
            assert fault.reason_code in (R.PACKET_TOO_LARGE, R.MALFORMED_PACKET, R.PROTOCOL_ERROR), fault
            return
        assert len(decoder._buf) < max(5, max_packet_size)
