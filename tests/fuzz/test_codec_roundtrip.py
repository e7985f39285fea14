"""encode(packet) decodes back to an equal packet: every packet type, protocol levels 4 and 5 (and 3
for CONNECT), through the same ``Decoder`` the broker uses, in one read and byte by byte."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mqhook.mqtt import packets as P
from mqhook.mqtt.codec import Decoder
from mqhook.mqtt.encode import V3_DISCONNECT, encode

from .harness import shape
from .strategies import fuzz_settings, packet

CASES = [(level, ptype) for level in (4, 5) for ptype in P.PACKET_NAMES if level == 5 or ptype != P.AUTH]
CASES.append((3, P.CONNECT))


def _decode(data: bytes, level: int, ptype: int, one_by_one: bool) -> list[P.Packet]:
    # A CONNECT goes to a server-side decoder, which learns the level from it; the rest to one
    # that knows the level (what the broker's decoder is after the CONNECT, or a client's).
    decoder = Decoder() if ptype == P.CONNECT else Decoder(protocol_level=level)
    if not one_by_one:
        out = decoder.feed(data)
    else:
        out = [pkt for i in range(len(data)) for pkt in decoder.feed(data[i : i + 1])]
    assert not decoder._buf
    if ptype == P.CONNECT:
        assert decoder.protocol_level == level
    return out


@pytest.mark.parametrize(("level", "ptype"), CASES, ids=[f"v{lv}-{P.PACKET_NAMES[t]}" for lv, t in CASES])
@fuzz_settings(60)
@given(data=st.data())
def test_encode_then_decode_gives_the_packet_back(level: int, ptype: int, data: st.DataObject) -> None:
    pkt = data.draw(packet(level, ptype))
    wire = encode(pkt, level)
    if ptype == P.DISCONNECT and level < 5:
        assert wire == b""  # a 3.1.1 server sends none; a client's is the two bytes below
        wire = V3_DISCONNECT
        pkt = P.Disconnect()
    for one_by_one in (False, True):
        assert shape(_decode(wire, level, ptype, one_by_one)) == [shape(pkt)], wire.hex()


@fuzz_settings(40)
@given(data=st.data(), level=st.sampled_from([4, 5]))
def test_a_stream_of_packets_decodes_to_the_same_stream(data: st.DataObject, level: int) -> None:
    """Several packets back to back in one buffer, cut anywhere: the same packets in order."""
    from .strategies import any_packet

    pkts = data.draw(st.lists(any_packet(level), min_size=1, max_size=6))
    if level < 5:
        pkts = [p for p in pkts if p.type != P.DISCONNECT] or [P.Pingreq()]
    wire = b"".join(encode(p, level) for p in pkts)
    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(wire) - 1)), max_size=8)))
    decoder = Decoder(protocol_level=level)
    out = []
    start = 0
    for c in [*cuts, len(wire)]:
        out += decoder.feed(wire[start:c])
        start = c
    assert shape(out) == shape(pkts)
