"""The event table: every event mqhook reports, one row each (its fields and what writes it).

This module owns the list of events. A row names an event by its struct (``mqhook.events.model``;
the struct's ``event`` tag is EMQX's event name, and the broker hook point of the same name fires
it, see ``mqhook.broker.hooks``) and says how the hook point's arguments become the event's JSON:

- ``MessageEvent``: one of the five message events. Its writer is a ``MessageWriter`` method
  taking ``(encoding, msg, *the hook's other arguments)``; consumers choose it by topic filter and
  payload encoding. ``receiver`` marks the three about a subscriber's copy (the hook passes
  ``(msg, session, ...)`` and the event's ``clientid`` is the subscriber's).
- ``ClientEvent``: a client or session event. Its builder takes ``(node, conn, *the hook's other
  arguments)`` and returns the struct, encoded once for every consumer.

Adding an event: its hook point and call site in the broker, its struct in ``model``, its
writer or builder, one row here, and tests (tests/unit/test_events.py holds every row to its
struct and to the broker's hook points).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple, Union

import msgspec

from mqhook.broker.hooks import HOOKPOINTS
from mqhook.errors import MqhookError
from mqhook.events import build
from mqhook.events.model import (
    CheckAuthnComplete,
    CheckAuthzComplete,
    ClientConnack,
    ClientConnected,
    ClientDisconnected,
    DeliveryDropped,
    MessageAcked,
    MessageDelivered,
    MessageDropped,
    MessagePublish,
    SessionSubscribed,
    SessionUnsubscribed,
    event_name,
)
from mqhook.events.writer import MessageWriter

__all__ = ["EVENTS", "EVENT_NAMES", "EVENT_TYPES", "MESSAGE_EVENTS", "ClientEvent", "Event", "MessageEvent"]


class MessageEvent(NamedTuple):
    struct: type[msgspec.Struct]
    write: Callable[..., bytes]  # (writer, encoding, msg, *rest) -> the event's JSON object
    receiver: bool = False

    @property
    def name(self) -> str:
        return event_name(self.struct)


class ClientEvent(NamedTuple):
    struct: type[msgspec.Struct]
    build: Callable[..., msgspec.Struct]  # (node, conn, *rest) -> the event

    @property
    def name(self) -> str:
        return event_name(self.struct)


EVENTS: tuple[MessageEvent | ClientEvent, ...] = (
    MessageEvent(MessagePublish, MessageWriter.publish),
    MessageEvent(MessageDelivered, MessageWriter.delivered, receiver=True),
    MessageEvent(MessageAcked, MessageWriter.acked, receiver=True),
    MessageEvent(MessageDropped, MessageWriter.dropped),
    MessageEvent(DeliveryDropped, MessageWriter.delivery_dropped, receiver=True),
    ClientEvent(ClientConnected, build.client_connected),
    ClientEvent(ClientDisconnected, build.client_disconnected),
    ClientEvent(ClientConnack, build.client_connack),
    ClientEvent(CheckAuthzComplete, build.check_authz_complete),
    ClientEvent(CheckAuthnComplete, build.check_authn_complete),
    ClientEvent(SessionSubscribed, build.session_subscribed),
    ClientEvent(SessionUnsubscribed, build.session_unsubscribed),
)

EVENT_NAMES: tuple[str, ...] = tuple(row.name for row in EVENTS)
"""Every event name, in the table's order (what a webhook's ``events = "all"`` means)."""

MESSAGE_EVENTS: frozenset[str] = frozenset(row.name for row in EVENTS if isinstance(row, MessageEvent))

EVENT_TYPES: dict[str, type[msgspec.Struct]] = {row.name: row.struct for row in EVENTS}
"""EMQX event name -> its struct."""

Event: Any = Union[tuple(row.struct for row in EVENTS)]  # noqa: UP007 - built at run time from the table
"""Any event: ``msgspec.json.decode(body, type=Event)`` picks the struct by its ``event`` key."""

_missing = set(HOOKPOINTS).symmetric_difference(EVENT_NAMES)
if _missing:  # a hook point without a row, or a row without a hook point: caught at import
    raise MqhookError(f"events and broker hook points disagree on {sorted(_missing)}")
