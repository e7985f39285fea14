"""The closed set of hook points the broker fires, and the no-op base every listener extends.

Call sites test a ``want_*`` flag before calling (and before building any
argument), so an event nobody listens to costs one attribute read. Hooks are
synchronous and must never block: a listener does at most a non-blocking put
into a bounded queue. After a PUBLISH has been handled, the connection reads
``pressure``: when a listener's queue is over its high-water mark under a
``backpressure`` policy, the publisher's socket is paused until ``on_relief``
callbacks fire.

Objects passed in are the broker's own (``Connection``, ``Session``,
``Message``); listeners read their public attributes and must not keep them
beyond the call.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mqhook.broker.connection import Connection
    from mqhook.broker.message import Message
    from mqhook.broker.session import Session

# Event names, exactly as EMQX spells them.
MESSAGE_PUBLISH = "message.publish"
MESSAGE_DELIVERED = "message.delivered"
MESSAGE_ACKED = "message.acked"
MESSAGE_DROPPED = "message.dropped"
DELIVERY_DROPPED = "delivery.dropped"
CLIENT_CONNECTED = "client.connected"
CLIENT_DISCONNECTED = "client.disconnected"
CLIENT_CONNACK = "client.connack"
CHECK_AUTHZ_COMPLETE = "client.check_authz_complete"
CHECK_AUTHN_COMPLETE = "client.check_authn_complete"
SESSION_SUBSCRIBED = "session.subscribed"
SESSION_UNSUBSCRIBED = "session.unsubscribed"

MESSAGE_EVENTS = (MESSAGE_PUBLISH, MESSAGE_DELIVERED, MESSAGE_ACKED, MESSAGE_DROPPED, DELIVERY_DROPPED)
CLIENT_EVENTS = (
    CLIENT_CONNECTED,
    CLIENT_DISCONNECTED,
    CLIENT_CONNACK,
    CHECK_AUTHZ_COMPLETE,
    CHECK_AUTHN_COMPLETE,
    SESSION_SUBSCRIBED,
    SESSION_UNSUBSCRIBED,
)
ALL_EVENTS = MESSAGE_EVENTS + CLIENT_EVENTS


class Hooks:
    """No listener: every flag False, every method a no-op. Subclasses set the flags they serve."""

    want_connected = False
    want_connack = False
    want_disconnected = False
    want_authn = False
    want_authz = False
    want_subscribed = False
    want_unsubscribed = False
    want_publish = False
    want_dropped = False
    want_delivered = False
    want_acked = False
    want_delivery_dropped = False
    # True while some listener wants its publishers paused (overflow = backpressure).
    pressure = False

    def client_connected(self, conn: Connection) -> None:
        """Session opened, before CONNACK is sent (so connected precedes connack)."""

    def client_connack(self, conn: Connection, reason_code: int) -> None:
        """CONNACK about to be sent, success or failure."""

    def client_disconnected(self, conn: Connection, reason: str, disconn_props: dict[str, Any]) -> None:
        """A connected client's connection ended; ``reason`` uses EMQX's names."""

    def check_authn_complete(self, conn: Connection, reason_code: str, is_superuser: bool, is_anonymous: bool) -> None:
        """Authentication decided for a CONNECT."""

    def check_authz_complete(self, conn: Connection, topic: str, action: str, result: str, source: str) -> None:
        """Authorization decided for one publish or one subscription filter."""

    def session_subscribed(self, conn: Connection, topic_filter: str, qos: int, sub_props: dict[str, Any]) -> None:
        """One filter subscribed (one call per filter)."""

    def session_unsubscribed(self, conn: Connection, topic_filter: str, qos: int, unsub_props: dict[str, Any]) -> None:
        """One filter unsubscribed by an UNSUBSCRIBE (one call per filter)."""

    def message_publish(self, msg: Message) -> None:
        """A message entered the broker (client PUBLISH or a will), before routing."""

    def message_dropped(self, msg: Message, reason: str) -> None:
        """A message was dropped while routing (e.g. ``no_subscribers``)."""

    def message_delivered(self, session: Session, msg: Message, qos: int, retain: bool) -> None:
        """A copy was written to a subscriber's connection."""

    def message_acked(self, session: Session, msg: Message, qos: int, puback_props: dict[str, Any]) -> None:
        """A subscriber acknowledged a QoS 1 (PUBACK) or QoS 2 (PUBCOMP) copy."""

    def delivery_dropped(self, session: Session, msg: Message, qos: int, reason: str) -> None:
        """One subscriber's copy was dropped (``queue_full``, ``qos0_msg``, ``no_local``, ``expired``)."""

    def on_relief(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once, when ``pressure`` falls again (default: at once)."""
        callback()


NO_HOOKS = Hooks()
