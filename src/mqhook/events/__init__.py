"""Events layer: one msgspec Struct per EMQX 5 event, builders from broker objects, and the hooks
that route events to sinks (webhooks). See ``model`` (shapes), ``props`` (``*_props``), ``build``
(field sources), ``sink`` (the consumer contract) and ``hooks`` (routing, backpressure)."""

from __future__ import annotations

from mqhook.events.build import BASE64, PAYLOAD_ENCODINGS, PLAIN, encode_payload
from mqhook.events.hooks import EventHooks
from mqhook.events.model import (
    EVENT_TYPES,
    CheckAuthnComplete,
    CheckAuthzComplete,
    ClientConnack,
    ClientConnected,
    ClientDisconnected,
    DeliveryDropped,
    Event,
    Flags,
    MessageAcked,
    MessageDelivered,
    MessageDropped,
    MessagePublish,
    SessionSubscribed,
    SessionUnsubscribed,
)
from mqhook.events.props import EMPTY_ATTRS, EMPTY_PROPS, FrozenDict, printable_props
from mqhook.events.sink import EventSink

__all__ = [
    "BASE64",
    "EMPTY_ATTRS",
    "EMPTY_PROPS",
    "EVENT_TYPES",
    "PAYLOAD_ENCODINGS",
    "PLAIN",
    "CheckAuthnComplete",
    "CheckAuthzComplete",
    "ClientConnack",
    "ClientConnected",
    "ClientDisconnected",
    "DeliveryDropped",
    "Event",
    "EventHooks",
    "EventSink",
    "Flags",
    "FrozenDict",
    "MessageAcked",
    "MessageDelivered",
    "MessageDropped",
    "MessagePublish",
    "SessionSubscribed",
    "SessionUnsubscribed",
    "encode_payload",
    "printable_props",
]
