"""The broker's hook points: the closed set of events it fires, one slot per event.

This module owns the broker's side of events (EMQX's hookpoints): which events exist, when each
fires and with which arguments. A slot of ``Hooks`` holds None while nobody listens, so a call
site costs one attribute read and builds nothing; a listener (``mqhook.events``) installs a
callable in the slots it serves. Hooks are synchronous and must never block: a listener does at
most a non-blocking put into a bounded queue. The objects passed in are the broker's own
(``Message``, ``Session``, ``Connection``); a listener reads their public attributes and keeps none
of them beyond the call.

A slot is named after its EMQX event, the first dot written as an underscore: ``client_connected``
fires ``client.connected``. ``HOOKPOINTS`` maps event names to slots. Adding an event takes a slot
here and its call site in the broker, then one row in ``mqhook.events.catalogue`` (its fields and
its builder) and its tests.

A listener that cannot keep up asks publishers to wait through the broker's ``Backpressure``
(``mqhook.broker.flow``), not through these slots.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mqhook.broker.connection import Connection
    from mqhook.broker.message import Message
    from mqhook.broker.session import Session

__all__ = ["HOOKPOINTS", "Hooks"]


class Hooks:
    """One slot per hook point: None, or the listener's callable (see the module docstring)."""

    # -- message events: ``msg`` is shared by every copy; ``session`` is the one receiving a copy ----
    message_publish: Callable[[Message], None] | None
    """A message entered the broker (a client's PUBLISH or a will), before routing."""
    message_dropped: Callable[[Message, str], None] | None
    """The message reached no one or was refused on arrival: ``(msg, reason)``, reason in
    ``stats.MESSAGE_DROP_REASONS``."""
    message_delivered: Callable[[Message, Session, int, bool], None] | None
    """A copy was written to a subscriber's connection: ``(msg, session, qos, retain)``."""
    message_acked: Callable[[Message, Session, int, dict[str, Any]], None] | None
    """A subscriber acknowledged its QoS 1 (PUBACK) or QoS 2 (PUBCOMP) copy: ``(msg, session, qos,
    properties of the ack)``."""
    delivery_dropped: Callable[[Message, Session, int, str], None] | None
    """One subscriber's copy will never be sent: ``(msg, session, qos, reason)``, reason in
    ``stats.DELIVERY_DROP_REASONS``."""

    # -- client and session events: ``conn`` is the client's ``Connection`` -------------------------
    client_connected: Callable[[Connection], None] | None
    """The session is open, before CONNACK is sent (so connected precedes connack, as in EMQX)."""
    client_connack: Callable[[Connection, int], None] | None
    """CONNACK is about to be sent: ``(conn, reason code)``, success or refusal."""
    client_disconnected: Callable[[Connection, str, dict[str, Any]], None] | None
    """A connected client's connection ended: ``(conn, reason, DISCONNECT properties)``, reason in
    ``stats.DISCONNECT_REASONS`` (EMQX's names)."""
    client_check_authn_complete: Callable[[Connection, str, bool, bool], None] | None
    """Authentication decided for a CONNECT: ``(conn, reason name, is_superuser, is_anonymous)``."""
    client_check_authz_complete: Callable[[Connection, str, str, str, str], None] | None
    """Authorization decided for one publish or one subscription filter: ``(conn, topic, action,
    "allow" | "deny", source)``."""
    session_subscribed: Callable[[Connection, str, int, dict[str, Any]], None] | None
    """One filter subscribed: ``(conn, filter, granted qos, SUBSCRIBE properties)``."""
    session_unsubscribed: Callable[[Connection, str, int, dict[str, Any]], None] | None
    """One filter removed by an UNSUBSCRIBE: ``(conn, filter, its qos, UNSUBSCRIBE properties)``."""

    __slots__ = tuple(__annotations__)  # the slots are the hook points declared above

    def __init__(self) -> None:
        for slot in self.__slots__:
            setattr(self, slot, None)

    def install(self, name: str, listener: Callable[..., None] | None) -> None:
        """Fill (or, with None, empty) the slot of event ``name``; KeyError for an unknown event."""
        setattr(self, HOOKPOINTS[name], listener)

    def clear(self) -> None:
        """Empty every slot: nobody listens."""
        for slot in self.__slots__:
            setattr(self, slot, None)


HOOKPOINTS: dict[str, str] = {slot.replace("_", ".", 1): slot for slot in Hooks.__slots__}
"""EMQX event name -> slot name, e.g. ``"client.check_authz_complete"`` -> ``"client_check_authz_complete"``."""
