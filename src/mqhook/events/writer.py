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

from mqhook.events.model import (
    DeliveryDropped,
    MessageAcked,
    MessageDelivered,
    MessageDropped,
    MessagePublish,
    event_name,
)
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
    """A client or session event struct as the JSON object consumers receive."""
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

    # Each method takes the encoding first, then the hook point's own arguments (``mqhook.broker.hooks``).
    # The message's attributes are read here, not in the compiled writer (see ext/eventjson.pyx).

    def publish(self, encoding: str, msg: Message) -> bytes:
        user = msg.username
        return _message_event(
            _PUBLISH, self._node, msg.sender, UNDEFINED if user is None else user, msg.peerhost, msg.peername,
            msg.id, msg.payload, encoding == BASE64, msg.topic, msg.qos, msg.retain, msg.dup,
            _props_json(props) if (props := msg.properties) else None, msg.received_at, None, None, _PUBLISH_TAIL,
        )  # fmt: skip

    def dropped(self, encoding: str, msg: Message, reason: str) -> bytes:
        user = msg.username
        return _message_event(
            _DROPPED, self._node, msg.sender, UNDEFINED if user is None else user, msg.peerhost, msg.peername,
            msg.id, msg.payload, encoding == BASE64, msg.topic, msg.qos, msg.retain, msg.dup,
            _props_json(props) if (props := msg.properties) else None, msg.received_at, None, None,
            self._reason(reason),
        )  # fmt: skip

    def _delivery(
        self, head: bytes, encoding: str, msg: Message, session: Session, qos: int, retain: bool, tail: bytes
    ) -> bytes:
        user, peerhost, peername = session.client_info
        sender = msg.username
        return _message_event(
            head, self._node, session.client_id, UNDEFINED if user is None else user, peerhost, peername,
            msg.id, msg.payload, encoding == BASE64, msg.topic, qos, retain, msg.dup,
            _props_json(props) if (props := msg.properties) else None, msg.received_at, msg.sender,
            UNDEFINED if sender is None else sender, tail,
        )  # fmt: skip

    def delivered(self, encoding: str, msg: Message, session: Session, qos: int, retain: bool) -> bytes:
        return self._delivery(_DELIVERED, encoding, msg, session, qos, retain, _CLOSE)

    def acked(self, encoding: str, msg: Message, session: Session, qos: int, puback_props: dict[str, Any]) -> bytes:
        tail = b',"puback_props":' + _encode(printable_props(puback_props)) + _CLOSE if puback_props else _EMPTY_PUBACK
        return self._delivery(_ACKED, encoding, msg, session, qos, msg.retain, tail)

    def delivery_dropped(self, encoding: str, msg: Message, session: Session, qos: int, reason: str) -> bytes:
        return self._delivery(_DELIVERY_DROPPED, encoding, msg, session, qos, msg.retain, self._reason(reason))


def _props_json(props: dict[str, Any]) -> bytes:
    """The ``pub_props`` JSON of a message with properties (rare: without, the writer is given None
    and writes the empty block itself)."""
    return _encode(printable_props(props))


_PUBLISH = _head(event_name(MessagePublish))
_PUBLISH_TAIL = b',"client_attrs":{}}'
_DROPPED = _head(event_name(MessageDropped))
_DELIVERED = _head(event_name(MessageDelivered))
_ACKED = _head(event_name(MessageAcked))
_DELIVERY_DROPPED = _head(event_name(DeliveryDropped))
