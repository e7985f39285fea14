"""Message events as JSON bytes, written straight from the broker's ``Message``: the webhook hot path.

This module owns where each field of the five message events comes from. The shapes are the
structs of ``mqhook.events.model`` (tests decode every body into them and compare key sets),
but no struct is built: one call of the writer (``ext/eventjson.pyx``, or its pure-Python
reference ``mqhook._eventjson_py``, chosen by ``mqhook.native``) formats the whole object.
Field sources follow ``emqx_rule_events`` (EMQX v5.8.9, ``eventmsg_*``):

- ``timestamp``: wall clock in ms when the event is written (``with_basic_columns/3``);
- ``id``: ``Message.id``, made once per message, so every event about one message carries
  the same id (``emqx_guid:to_hexstr/1``: 32 uppercase hex);
- ``publish_received_at``: when the broker accepted the PUBLISH, in ms;
- ``message.publish`` / ``message.dropped``: ``clientid``, ``username``, ``peerhost`` and
  ``peername`` describe the publisher; ``qos`` and ``flags`` are the message's;
- ``message.delivered`` / ``message.acked`` / ``delivery.dropped``: ``clientid``,
  ``username``, ``peerhost`` and ``peername`` describe the RECEIVER (its session's last
  ClientInfo, so an offline receiver keeps its last address), ``from_clientid`` and
  ``from_username`` the publisher; ``qos`` is the QoS of the copy; ``flags.retain`` is the
  copy's for delivered (Retain As Published applied) and the message's own for acked and
  delivery.dropped (their hooks do not carry the copy's);
- absent values are ``"undefined"`` (anonymous ``username``, an unknown address);
- ``pub_props`` / ``puback_props`` via ``props.printable_props``; ``client_attrs`` is ``{}``.

Payload encodings: ``"plain"`` decodes UTF-8 with U+FFFD for invalid bytes, exactly what
EMQX's JSON encoder does, so binary payloads are lost; ``"base64"`` is standard base64 of
the raw bytes, so they survive.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec

from mqhook.events.props import printable_props
from mqhook.native import load

if TYPE_CHECKING:
    from mqhook.broker.message import Message
    from mqhook.broker.session import Session

__all__ = ["BASE64", "IMPLEMENTATION", "PAYLOAD_ENCODINGS", "PLAIN", "MessageWriter", "event_json"]

_impl, IMPLEMENTATION = load("mqhook._eventjson", "mqhook._eventjson_py")
_message_event = _impl.message_event
_encode = msgspec.json.Encoder().encode

UNDEFINED = "undefined"
PLAIN = "plain"
BASE64 = "base64"
PAYLOAD_ENCODINGS = frozenset({PLAIN, BASE64})
_CLOSE = b"}"
_EMPTY_PUBACK = b',"puback_props":{"User-Property":{}}}'


def event_json(event: msgspec.Struct) -> bytes:
    """A client or session event struct as the JSON object sinks receive."""
    return _encode(event)


def _head(name: str) -> bytes:
    return b'{"event":' + _encode(name) + b',"timestamp":'


class MessageWriter:
    """Writes the five message events of one node; every method returns the JSON object as bytes."""

    __slots__ = ("_node", "_reasons")

    def __init__(self, node: str) -> None:
        self._node = _encode(node)
        self._reasons: dict[str, bytes] = {}  # reason -> b',"reason":"..."}'; reasons are a closed set

    def _reason(self, reason: str) -> bytes:
        tail = self._reasons.get(reason)
        if tail is None:
            tail = self._reasons[reason] = b',"reason":' + _encode(reason) + _CLOSE
        return tail

    # The writer takes the message's fields as arguments (see ext/eventjson.pyx for why).

    def publish(self, msg: Message, encoding: str) -> bytes:
        user = msg.username
        return _message_event(
            _PUBLISH, self._node, msg.sender, UNDEFINED if user is None else user, msg.peerhost, msg.peername,
            msg.id, msg.payload, encoding == BASE64, msg.topic, msg.qos, msg.retain, msg.dup, msg.properties,
            msg.received_at, None, None, _PUBLISH_TAIL,
        )  # fmt: skip

    def dropped(self, msg: Message, reason: str, encoding: str) -> bytes:
        user = msg.username
        return _message_event(
            _DROPPED, self._node, msg.sender, UNDEFINED if user is None else user, msg.peerhost, msg.peername,
            msg.id, msg.payload, encoding == BASE64, msg.topic, msg.qos, msg.retain, msg.dup, msg.properties,
            msg.received_at, None, None, self._reason(reason),
        )  # fmt: skip

    def _delivery(
        self, head: bytes, session: Session, msg: Message, qos: int, retain: bool, encoding: str, tail: bytes
    ) -> bytes:
        user, peerhost, peername = session.client_info
        sender = msg.username
        return _message_event(
            head, self._node, session.client_id, UNDEFINED if user is None else user, peerhost, peername,
            msg.id, msg.payload, encoding == BASE64, msg.topic, qos, retain, msg.dup, msg.properties,
            msg.received_at, msg.sender, UNDEFINED if sender is None else sender, tail,
        )  # fmt: skip

    def delivered(self, session: Session, msg: Message, qos: int, retain: bool, encoding: str) -> bytes:
        return self._delivery(_DELIVERED, session, msg, qos, retain, encoding, _CLOSE)

    def acked(self, session: Session, msg: Message, qos: int, puback_props: dict[str, Any], encoding: str) -> bytes:
        tail = b',"puback_props":' + _encode(printable_props(puback_props)) + _CLOSE if puback_props else _EMPTY_PUBACK
        return self._delivery(_ACKED, session, msg, qos, msg.retain, encoding, tail)

    def delivery_dropped(self, session: Session, msg: Message, qos: int, reason: str, encoding: str) -> bytes:
        return self._delivery(_DELIVERY_DROPPED, session, msg, qos, msg.retain, encoding, self._reason(reason))


_PUBLISH = _head("message.publish")
_PUBLISH_TAIL = b',"client_attrs":{}}'
_DROPPED = _head("message.dropped")
_DELIVERED = _head("message.delivered")
_ACKED = _head("message.acked")
_DELIVERY_DROPPED = _head("delivery.dropped")
