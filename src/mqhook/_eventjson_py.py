"""Pure-Python message-event JSON writer: the reference for, and fallback of, ext/eventjson.pyx.

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

``pub_props`` is the property block as JSON already, or None for ``{"User-Property":{}}``.
The module imports nothing from mqhook.
"""

from __future__ import annotations

import time
from binascii import b2a_base64

import msgspec

__all__ = ["message_event"]

_encode = msgspec.json.Encoder().encode
_EMPTY_PROPS = b'{"User-Property":{}}'
_FLAGS = (
    b',"flags":{"retain":false,"dup":false}',
    b',"flags":{"retain":false,"dup":true}',
    b',"flags":{"retain":true,"dup":false}',
    b',"flags":{"retain":true,"dup":true}',
)


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
    pub_props: bytes | None,
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
        _EMPTY_PROPS if pub_props is None else pub_props,
        b',"publish_received_at":',
        str(int(received_at * 1000)).encode(),
    ]
    if from_clientid is not None:
        parts += (b',"from_clientid":', _encode(from_clientid), b',"from_username":', _encode(from_username))
    parts.append(tail)
    return b"".join(parts)
