"""Hypothesis strategies: valid MQTT packets of every type for protocol levels 4 and 5, and the
mutations the codec fuzz applies to their bytes."""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st

from mqhook.mqtt import packets as P
from mqhook.mqtt import properties as PR
from mqhook.mqtt import reason as R
from mqhook.mqtt.wire import MAX_VARINT, encode_varint

# Text a UTF-8 string field may hold: no U+0000 [MQTT-1.5.4-2], no surrogates (not encodable).
TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12)
TOPIC = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00+#"), min_size=1, max_size=12)
BLOB = st.binary(max_size=24)
PACKET_ID = st.integers(1, 0xFFFF)


def _value(kind: int, name: str) -> st.SearchStrategy[Any]:
    if name in ("Receive-Maximum", "Topic-Alias"):
        return st.integers(1, 0xFFFF)
    if name == "Maximum-Packet-Size":
        return st.integers(1, 0xFFFFFFFF)
    if kind == PR.BYTE:
        return st.integers(0, 1)  # every byte property is a boolean (or Maximum-QoS 0/1)
    if kind == PR.U16:
        return st.integers(0, 0xFFFF)
    if kind == PR.U32:
        return st.integers(0, 0xFFFFFFFF)
    if kind == PR.VARINT:
        return st.integers(1, MAX_VARINT)
    if kind == PR.STR:
        return TEXT
    if kind == PR.BIN:
        return BLOB
    return st.tuples(TEXT, TEXT)


@st.composite
def properties(draw: st.DrawFn, ptype: int) -> dict[str, Any]:
    """A valid property block for packet type ``ptype`` (``PR.WILL`` for Will Properties)."""
    allowed = sorted(PR.ALLOWED[ptype])
    chosen = draw(st.lists(st.sampled_from(allowed), max_size=4, unique=True)) if allowed else []
    props: dict[str, Any] = {}
    for pid in chosen:
        name, kind, _ = PR.TABLE[pid]
        if name == PR.USER_PROPERTY or (name == PR.SUBSCRIPTION_IDENTIFIER and ptype == P.PUBLISH):
            props[name] = draw(st.lists(_value(kind, name), min_size=1, max_size=3))
        else:
            props[name] = draw(_value(kind, name))
    if ptype == P.CONNECT and "Authentication-Data" in props and "Authentication-Method" not in props:
        props["Authentication-Method"] = "m"
    return props


def _props(level: int, ptype: int) -> st.SearchStrategy[dict[str, Any]]:
    return properties(ptype) if level == 5 else st.just({})


@st.composite
def connect(draw: st.DrawFn, level: int) -> P.Connect:
    will = None
    if draw(st.booleans()):
        will = P.Will(
            draw(TOPIC), draw(BLOB), draw(st.integers(0, 2)), draw(st.booleans()), draw(_props(level, PR.WILL))
        )
    username = draw(st.none() | TEXT)
    password = draw(st.none() | BLOB)
    if level < 5 and username is None:
        password = None  # [MQTT-3.1.2-22]
    name = "MQIsdp" if level == 3 else "MQTT"
    return P.Connect(
        draw(TEXT),
        level,
        name,
        draw(st.booleans()),
        draw(st.integers(0, 0xFFFF)),
        will,
        username,
        password,
        draw(_props(level, P.CONNECT)),
    )


_V3_CONNACK = sorted(R.V5_FROM_V3_CONNACK.values())


@st.composite
def connack(draw: st.DrawFn, level: int) -> P.Connack:
    code = draw(st.integers(0, 255) if level == 5 else st.sampled_from(_V3_CONNACK))
    present = draw(st.booleans()) and code < R.FAILURE  # [MQTT-3.2.2-4] [MQTT-3.2.2-6]
    return P.Connack(present, code, draw(_props(level, P.CONNACK)))


@st.composite
def publish(draw: st.DrawFn, level: int) -> P.Publish:
    qos = draw(st.integers(0, 2))
    props = draw(_props(level, P.PUBLISH))
    topic = draw(TOPIC | st.just("")) if "Topic-Alias" in props else draw(TOPIC)
    return P.Publish(
        topic,
        draw(BLOB),
        qos,
        draw(st.booleans()),
        draw(st.booleans()) if qos else False,  # [MQTT-3.3.1-2]
        draw(PACKET_ID) if qos else None,
        props,
    )


def ack(cls: type[Any], level: int) -> st.SearchStrategy[Any]:
    reason = st.integers(0, 255) if level == 5 else st.just(0)
    return st.builds(cls, PACKET_ID, reason, _props(level, cls.type))


@st.composite
def subscribe(draw: st.DrawFn, level: int) -> P.Subscribe:
    subs = []
    for _ in range(draw(st.integers(1, 4))):
        if level == 5:
            sub = P.Subscription(
                draw(TEXT), draw(st.integers(0, 2)), draw(st.booleans()), draw(st.booleans()), draw(st.integers(0, 2))
            )
        else:
            sub = P.Subscription(draw(TEXT), draw(st.integers(0, 2)))
        subs.append(sub)
    return P.Subscribe(draw(PACKET_ID), subs, draw(_props(level, P.SUBSCRIBE)))


def suback(level: int) -> st.SearchStrategy[P.Suback]:
    codes = st.lists(st.integers(0, 255) if level == 5 else st.sampled_from([0, 1, 2, 0x80]), max_size=6)
    return st.builds(P.Suback, PACKET_ID, codes, _props(level, P.SUBACK))


def unsubscribe(level: int) -> st.SearchStrategy[P.Unsubscribe]:
    return st.builds(P.Unsubscribe, PACKET_ID, st.lists(TEXT, min_size=1, max_size=4), _props(level, P.UNSUBSCRIBE))


def unsuback(level: int) -> st.SearchStrategy[P.Unsuback]:
    if level != 5:
        return st.builds(P.Unsuback, PACKET_ID)
    return st.builds(P.Unsuback, PACKET_ID, st.lists(st.integers(0, 255), max_size=6), _props(5, P.UNSUBACK))


def packet(level: int, ptype: int) -> st.SearchStrategy[Any]:
    """A valid packet of type ``ptype`` that round-trips at ``level``."""
    table: dict[int, st.SearchStrategy[Any]] = {
        P.CONNECT: connect(level),
        P.CONNACK: connack(level),
        P.PUBLISH: publish(level),
        P.PUBACK: ack(P.Puback, level),
        P.PUBREC: ack(P.Pubrec, level),
        P.PUBREL: ack(P.Pubrel, level),
        P.PUBCOMP: ack(P.Pubcomp, level),
        P.SUBSCRIBE: subscribe(level),
        P.SUBACK: suback(level),
        P.UNSUBSCRIBE: unsubscribe(level),
        P.UNSUBACK: unsuback(level),
        P.PINGREQ: st.just(P.Pingreq()),
        P.PINGRESP: st.just(P.Pingresp()),
        P.DISCONNECT: st.builds(P.Disconnect, st.integers(0, 255), _props(level, P.DISCONNECT)),
        P.AUTH: st.builds(P.Auth, st.integers(0, 255), _props(level, P.AUTH)),
    }
    return table[ptype]


# Packets a client sends after its CONNECT (what a server-side decoder reads).
CLIENT_TYPES = [P.PUBLISH, P.PUBACK, P.PUBREC, P.PUBREL, P.PUBCOMP, P.SUBSCRIBE, P.UNSUBSCRIBE, P.PINGREQ, P.DISCONNECT]


def any_packet(level: int) -> st.SearchStrategy[Any]:
    types = [t for t in P.PACKET_NAMES if t != P.CONNECT and (level == 5 or t != P.AUTH)]
    return st.sampled_from(types).flatmap(lambda t: packet(level, t))


# -- mutations -------------------------------------------------------------------------------------
# Bytes that break things in particular ways: bad UTF-8 (a lone continuation, an overlong NUL, a
# UTF-16 surrogate, 0xFF), U+0000, unknown and misplaced property ids, varints of 4 and 5 bytes,
# the 256 MB remaining length, lengths pointing past the end.
NASTY = [
    b"\xff",
    b"\x80",
    b"\xc3\x28",
    b"\xc0\x80",
    b"\xed\xa0\x80",
    b"\x00",
    b"\x00\x00",
    b"\xff\xff",
    b"\x7f",
    b"\x26",  # User-Property id with nothing after it
    b"\x02\x0b\x00",  # property block: Subscription-Identifier 0
    b"\x05\x23\x00\x00",  # property length 5, Topic-Alias 0, short
    b"\x01\x2a",  # Shared-Subscription-Available (CONNACK only), no value
    b"\x80\x80\x80\x80\x01",  # a 5-byte varint
    b"\xff\xff\xff\x7f",  # 268,435,455: the 256 MB remaining length
    b"\xff\xff\xff\xff\x7f",
]


@st.composite
def mutate(draw: st.DrawFn, data: bytes) -> bytes:
    """``data`` with a few mutations: cut, bits flipped, bytes replaced by ``NASTY`` ones or random
    ones, inserted, deleted, or the remaining length of its first packet rewritten."""
    buf = bytearray(data)
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["truncate", "flip", "nasty", "insert", "delete", "length", "random"]))
        pos = draw(st.integers(0, max(0, len(buf))))
        if op == "truncate":
            del buf[pos:]
        elif op == "flip" and buf:
            i = min(pos, len(buf) - 1)
            buf[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "nasty":
            piece = draw(st.sampled_from(NASTY))
            buf[pos : pos + draw(st.integers(0, len(piece)))] = piece
        elif op == "insert":
            buf[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del buf[pos : pos + draw(st.integers(1, 8))]
        elif op == "length" and len(buf) >= 2:
            size = 1
            while size < 4 and size < len(buf) - 1 and buf[size] & 0x80:
                size += 1
            length = draw(
                st.sampled_from([0, 1, 2, 127, 128, 16383, 16384, 2097151, MAX_VARINT]) | st.integers(0, MAX_VARINT)
            )
            buf[1 : 1 + size] = encode_varint(length)
        elif op == "random":
            buf[pos : pos + draw(st.integers(0, 8))] = draw(st.binary(max_size=8))
    return bytes(buf)


# -- how long hypothesis runs -------------------------------------------------------------------------
def fuzz_settings(max_examples: int) -> settings:
    """``max_examples`` times ``MQHOOK_FUZZ_SCALE`` (default 1: the short run of the test suite;
    ``make fuzz`` sets a larger one). A generous deadline: an example is a few ms, so one that takes a
    second is a finding (a parser gone quadratic), never noise; no example database (``-p
    no:cacheprovider`` runs leave nothing behind); ``derandomize`` off so each run explores anew."""
    scale = float(os.environ.get("MQHOOK_FUZZ_SCALE", "1"))
    return settings(
        max_examples=max(1, int(max_examples * scale)),
        deadline=timedelta(seconds=1),
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
        database=None,
        print_blob=True,
        phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],  # no explain: it traces
    )
