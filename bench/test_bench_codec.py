"""Micro benchmarks of the MQTT codec: PUBLISH decode throughput and the fan-out encoder."""

from __future__ import annotations

from typing import Any

import pytest

from mqhook.mqtt.codec import Decoder
from mqhook.mqtt.encode import encode_publish

PAYLOAD_64 = bytes(range(64))
COUNT = 1000


def _stream(level: int) -> bytes:
    """1000 small PUBLISH packets (QoS 0 and 1 mixed, 16-byte payloads) on varied topics."""
    return b"".join(
        encode_publish(f"sensors/{i % 50}/temp", b"0123456789abcdef", i % 2, False, False, i % 2 or None, None, level)
        for i in range(1, COUNT + 1)
    )


def _decode_all(stream: bytes, level: int, chunk: int) -> int:
    decoder = Decoder(protocol_level=level)
    count = 0
    for start in range(0, len(stream), chunk):
        count += len(decoder.feed(stream[start : start + chunk]))
    return count


@pytest.mark.parametrize("level", [4, 5], ids=["v311", "v5"])
def test_decode_1000_publish_one_chunk(benchmark: Any, level: int) -> None:
    stream = _stream(level)
    assert benchmark(_decode_all, stream, level, len(stream)) == COUNT


@pytest.mark.parametrize("level", [4, 5], ids=["v311", "v5"])
def test_decode_1000_publish_4k_chunks(benchmark: Any, level: int) -> None:
    stream = _stream(level)
    assert benchmark(_decode_all, stream, level, 4096) == COUNT


@pytest.mark.parametrize("level", [4, 5], ids=["v311", "v5"])
@pytest.mark.parametrize("qos", [0, 1])
def test_encode_publish_64_bytes(benchmark: Any, level: int, qos: int) -> None:
    packet_id = 7 if qos else None
    data = benchmark(encode_publish, "sensors/12/temp", PAYLOAD_64, qos, False, False, packet_id, None, level)
    assert data.endswith(PAYLOAD_64)
