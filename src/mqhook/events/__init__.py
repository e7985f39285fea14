"""Events layer: one msgspec Struct per EMQX 5 event (the shapes), what fills them, and the hooks
that route events to sinks (webhooks) as JSON. See ``model`` (shapes), ``props`` (``*_props``),
``writer`` (message events, written straight to JSON), ``build`` (client and session events),
``sink`` (the consumer contract) and ``hooks`` (routing, backpressure)."""

from __future__ import annotations

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
from mqhook.events.writer import BASE64, PAYLOAD_ENCODINGS, PLAIN, MessageWriter, event_json

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
    "MessageWriter",
    "SessionSubscribed",
    "SessionUnsubscribed",
    "event_json",
    "printable_props",
]
