"""Pure-Python message-event JSON writer and message ids: the reference for, and fallback of, ext/eventjson.pyx.

This module owns the byte layout of the five message events (``message.publish``,
``message.delivered``, ``message.acked``, ``message.dropped``, ``delivery.dropped``) as the
webhook layer sends them, written straight from a broker ``Message`` without an event struct.
The fields, names and JSON types are those of ``mqhook.events.model``; which value goes in
which field is decided by the caller (``mqhook.events.writer``), so both writers only format.

Layout: ``head`` (``{"event":"<name>","timestamp":``), the time of writing in ms, ``node``
(already a JSON string), then ``clientid``, ``username``, ``id``, ``payload``, ``peerhost``,
``peername``, ``topic``, ``qos``, ``flags``, ``pub_props``, ``publish_received_at``, then
``from_clientid`` and ``from_username`` when given, then ``tail`` (the remaining fields of
the event and the closing brace, already JSON).

``payload`` is UTF-8 with invalid bytes replaced by U+FFFD (what EMQX's JSON encoder does),
or standard base64 with ``base64=True``.

Message ids are EMQX's (``emqx_guid``): a 64-bit microsecond timestamp, 48 bits naming this
node and process, a 16-bit sequence, printed as 32 uppercase hex digits. The sequence lives
in whichever module is selected (see ``mqhook.native``), so ids never repeat in a process.
"""

from __future__ import annotations

import itertools
import struct
import time
from binascii import b2a_base64
from typing import Any

import msgspec

__all__ = ["message_event", "new_message_id", "set_node_bits"]

_encode = msgspec.json.Encoder().encode
_EMPTY_PROPS = b'{"User-Property":{}}'
_FLAGS = (
    b',"flags":{"retain":false,"dup":false}',
    b',"flags":{"retain":false,"dup":true}',
    b',"flags":{"retain":true,"dup":false}',
    b',"flags":{"retain":true,"dup":true}',
)

_node_bits = 0
_seq = itertools.count()
_pack_id = struct.Struct(">QQ").pack


def set_node_bits(bits: int) -> None:
    """The middle 48 bits of every id (shifted left by 16), fixed per process."""
    global _node_bits
    _node_bits = bits


def new_message_id(received_at: float) -> str:
    """32 uppercase hex digits, as ``emqx_guid:to_hexstr/1`` prints them."""
    return _pack_id(int(received_at * 1_000_000), _node_bits | (next(_seq) & 0xFFFF)).hex().upper()


_printable_props: Any = None


def _props_json(props: dict[str, Any]) -> bytes:
    # Imported on first use, not at module level: mqhook.broker.message imports this module for
    # its ids, before the mqhook.events package (which imports it back) can be.
    global _printable_props
    if _printable_props is None:
        from mqhook.events.props import printable_props as _printable_props
    return _encode(_printable_props(props))


def message_event(
    head: bytes,
    node: bytes,
    clientid: str,
    username: str,
    peerhost: str,
    peername: str,
    mid: str,
    payload: bytes,
    base64: bool,
    topic: str,
    qos: int,
    retain: bool,
    dup: bool,
    props: dict[str, Any],
    received_at: float,
    from_clientid: str | None,
    from_username: str | None,
    tail: bytes,
) -> bytes:
    """One message event as JSON bytes (see the module docstring for the layout)."""
    if base64:
        payload_json = b'"' + b2a_base64(payload, newline=False) + b'"'
    else:
        payload_json = _encode(payload.decode("utf-8", "replace"))
    parts = [
        head,
        str(time.time_ns() // 1_000_000).encode(),
        b',"node":',
        node,
        b',"clientid":',
        _encode(clientid),
        b',"username":',
        _encode(username),
        b',"id":',
        _encode(mid),
        b',"payload":',
        payload_json,
        b',"peerhost":',
        _encode(peerhost),
        b',"peername":',
        _encode(peername),
        b',"topic":',
        _encode(topic),
        b',"qos":',
        str(qos).encode(),
        _FLAGS[2 * bool(retain) + bool(dup)],
        b',"pub_props":',
        _props_json(props) if props else _EMPTY_PROPS,
        b',"publish_received_at":',
        str(int(received_at * 1000)).encode(),
    ]
    if from_clientid is not None:
        parts += (b',"from_clientid":', _encode(from_clientid), b',"from_username":', _encode(from_username))
    parts.append(tail)
    return b"".join(parts)
