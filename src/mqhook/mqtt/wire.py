"""The data types of MQTT section 1.5 on the wire: integers, variable byte integers, strings, binary data.

Readers take a ``bytes`` object (its slices are the cheapest copies), a position
and an end, and return ``(value, next position)``; they raise MalformedPacket
naming the field when it is truncated or invalid. Encoders return bytes.
"""

from __future__ import annotations

from mqhook.errors import MalformedPacket

MAX_VARINT = 268_435_455


def read_varint(b: bytes, pos: int, end: int, what: str) -> tuple[int, int]:
    """A Variable Byte Integer at ``pos``; at most 4 bytes [MQTT-1.5.5-1]. Returns (value, next pos)."""
    value = 0
    shift = 0
    while True:
        if pos >= end:
            raise MalformedPacket(f"{what}: variable byte integer truncated")
        byte = b[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
        if shift >= 28:
            raise MalformedPacket(f"{what}: variable byte integer longer than 4 bytes [MQTT-1.5.5-1]")


def read_u16(b: bytes, pos: int, end: int, what: str) -> tuple[int, int]:
    """A Two Byte Integer, big-endian (section 1.5.2)."""
    if pos + 2 > end:
        raise MalformedPacket(f"{what}: truncated, 2 bytes needed, {end - pos} left")
    return (b[pos] << 8) | b[pos + 1], pos + 2


def read_u32(b: bytes, pos: int, end: int, what: str) -> tuple[int, int]:
    """A Four Byte Integer, big-endian (section 1.5.3)."""
    if pos + 4 > end:
        raise MalformedPacket(f"{what}: truncated, 4 bytes needed, {end - pos} left")
    return int.from_bytes(b[pos : pos + 4], "big"), pos + 4


def read_bin(b: bytes, pos: int, end: int, what: str) -> tuple[bytes, int]:
    """Binary Data: a 2-byte length then that many bytes (section 1.5.6)."""
    n, pos = read_u16(b, pos, end, what)
    stop = pos + n
    if stop > end:
        raise MalformedPacket(f"{what}: length {n} overruns the packet by {stop - end} bytes")
    return b[pos:stop], stop


def read_str(b: bytes, pos: int, end: int, what: str) -> tuple[str, int]:
    """A UTF-8 Encoded String: well-formed UTF-8 [MQTT-1.5.4-1] without U+0000 [MQTT-1.5.4-2]."""
    n, pos = read_u16(b, pos, end, what)
    stop = pos + n
    if stop > end:
        raise MalformedPacket(f"{what}: length {n} overruns the packet by {stop - end} bytes")
    try:
        text = b[pos:stop].decode()
    except UnicodeDecodeError as exc:
        raise MalformedPacket(f"{what} is not valid UTF-8 ({exc.reason} at byte {exc.start}) [MQTT-1.5.4-1]") from None
    if "\x00" in text:
        raise MalformedPacket(f"{what} {text!r} contains U+0000 [MQTT-1.5.4-2]")
    return text, stop


def encode_varint(value: int) -> bytes:
    """A Variable Byte Integer of 1 to 4 bytes (section 1.5.5)."""
    if value < 0x80:
        return bytes((value,))
    if value > MAX_VARINT:
        raise ValueError(f"variable byte integer {value} exceeds {MAX_VARINT}")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def encode_str(text: str) -> bytes:
    """A UTF-8 Encoded String: 2-byte length then the bytes (section 1.5.4)."""
    raw = text.encode("utf-8")
    return encode_bin(raw)


def encode_bin(raw: bytes) -> bytes:
    """Binary Data: 2-byte length then the bytes (section 1.5.6)."""
    if len(raw) > 0xFFFF:
        raise ValueError(f"string or binary field of {len(raw)} bytes exceeds 65535")
    return len(raw).to_bytes(2, "big") + raw
