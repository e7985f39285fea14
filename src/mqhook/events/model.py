"""One msgspec Struct per event, named and shaped as EMQX 5.8.9 emits them to a Webhook.

This module owns the event types: their field names, JSON types and the ``event``
tag. The fields are exactly the columns ``emqx_rule_events`` (EMQX v5.8.9) puts
in the event map for ``SELECT *``, plus the envelope EMQX adds in
``with_basic_columns/3``: ``event`` (the struct tag), ``timestamp`` (wall clock in
ms when the event was built) and ``node``. ``metadata`` (``{"rule_id": ...}``) is
not a field: it depends on the webhook, so the webhook layer adds it when encoding.

Conventions taken from EMQX:

- a value the broker does not know is the string ``"undefined"`` (EMQX encodes the
  Erlang atom ``undefined`` as a string), never ``null``;
- ``*_props`` are objects with at least ``{"User-Property": {}}`` (see ``props.py``);
- ``flags`` is ``{"retain": bool, "dup": bool}``;
- ``payload`` is a string (encoded per webhook: see ``writer``).

Every struct has ``clientid`` (the per-client ordering key). The structs are not
frozen but must be treated as read-only: one instance goes to every sink that
wants it. ``gc=False`` is safe because an event never refers back to itself.
"""

from __future__ import annotations

from typing import Any

import msgspec

from mqhook.events.props import EMPTY_ATTRS

__all__ = [
    "CheckAuthnComplete",
    "CheckAuthzComplete",
    "ClientConnack",
    "ClientConnected",
    "ClientDisconnected",
    "DeliveryDropped",
    "Flags",
    "MessageAcked",
    "MessageDelivered",
    "MessageDropped",
    "MessagePublish",
    "SessionSubscribed",
    "SessionUnsubscribed",
    "event_name",
    "flags",
]

UNDEFINED = "undefined"


class Flags(msgspec.Struct, frozen=True, gc=False):
    """The message flags object. EMQX adds ``sys`` for ``$SYS`` messages; mqhook publishes none."""

    retain: bool
    dup: bool


# Index 2 * retain + dup.
_FLAGS = tuple(Flags(retain=r, dup=d) for r in (False, True) for d in (False, True))


def flags(retain: bool, dup: bool) -> Flags:
    """One of four shared ``Flags`` instances: building an event allocates none."""
    return _FLAGS[2 * bool(retain) + bool(dup)]


class _Base(msgspec.Struct, kw_only=True, gc=False, tag_field="event"):
    """The envelope (``event`` is the tag) and the client every event is about."""

    timestamp: int
    node: str
    clientid: str
    username: str


# -- message events ---------------------------------------------------------------------------


class _MessageBase(_Base):
    """Columns shared by the five message events (EMQX ``eventmsg_publish`` and relatives)."""

    id: str
    payload: str
    peerhost: str
    peername: str
    topic: str
    qos: int
    flags: Flags
    pub_props: dict[str, Any]
    publish_received_at: int


class MessagePublish(_MessageBase, tag="message.publish"):
    """A PUBLISH (or a will) entered the broker, before routing. ``clientid``: the publisher."""

    client_attrs: dict[str, str] = EMPTY_ATTRS


class MessageDropped(_MessageBase, tag="message.dropped"):
    """Dropped while routing (``no_subscribers``, ``receive_maximum_exceeded``, ``packet_identifier_inuse``)."""

    reason: str


class _DeliveryBase(_MessageBase):
    """``clientid``/``username``/``peer*`` name the RECEIVER; ``from_*`` the publisher; qos as delivered."""

    from_clientid: str
    from_username: str


class MessageDelivered(_DeliveryBase, tag="message.delivered"):
    """A copy was written to a subscriber's connection."""


class MessageAcked(_DeliveryBase, tag="message.acked"):
    """The subscriber's PUBACK (QoS 1) or PUBCOMP (QoS 2) for a copy."""

    puback_props: dict[str, Any]


class DeliveryDropped(_DeliveryBase, tag="delivery.dropped"):
    """One subscriber's copy dropped (``queue_full``, ``qos0_msg``, ``no_local``, ``expired``)."""

    reason: str


# -- client and session events ----------------------------------------------------------------


class ClientConnected(_Base, tag="client.connected"):
    """Session opened; fired before ``client.connack``. ``expiry_interval`` is in SECONDS (EMQX divides by 1000)."""

    mountpoint: str
    peername: str
    sockname: str
    proto_name: str
    proto_ver: int
    keepalive: int
    clean_start: bool
    receive_maximum: int
    expiry_interval: int
    is_bridge: bool
    conn_props: dict[str, Any]
    connected_at: int
    client_attrs: dict[str, str] = EMPTY_ATTRS


class ClientDisconnected(_Base, tag="client.disconnected"):
    """A connected client's connection ended; ``reason`` per EMQX (``normal``, ``takenover``, ...)."""

    reason: str
    peername: str
    sockname: str
    proto_name: str
    proto_ver: int
    disconn_props: dict[str, Any]
    disconnected_at: int
    connected_at: int
    client_attrs: dict[str, str] = EMPTY_ATTRS


class ClientConnack(_Base, tag="client.connack"):
    """CONNACK about to be sent. ``expiry_interval`` is in MILLISECONDS here: EMQX 5.8.9 passes the
    conninfo value through unconverted (unlike ``client.connected``); we follow it for compatibility."""

    reason_code: str
    clean_start: bool
    peername: str
    sockname: str
    proto_name: str
    proto_ver: int
    keepalive: int
    expiry_interval: int
    conn_props: dict[str, Any]


class CheckAuthzComplete(_Base, tag="client.check_authz_complete"):
    """One authorization decision: ``action`` publish|subscribe, ``result`` allow|deny."""

    peername: str
    peerhost: str
    topic: str
    action: str
    authz_source: str
    result: str
    client_attrs: dict[str, str] = EMPTY_ATTRS


class CheckAuthnComplete(_Base, tag="client.check_authn_complete"):
    """One authentication decision for a CONNECT."""

    peername: str
    reason_code: str
    is_anonymous: bool
    is_superuser: bool
    client_attrs: dict[str, str] = EMPTY_ATTRS


class SessionSubscribed(_Base, tag="session.subscribed"):
    """One filter subscribed (shared subscriptions as ``$share/g/filter``); ``qos`` as granted."""

    peerhost: str
    peername: str
    topic: str
    qos: int
    sub_props: dict[str, Any]
    client_attrs: dict[str, str] = EMPTY_ATTRS


class SessionUnsubscribed(_Base, tag="session.unsubscribed"):
    """One filter removed by an UNSUBSCRIBE. EMQX's ``qos`` is the removed subscription's QoS; the
    hook does not pass it yet, so mqhook sends 0 (see ``build.session_unsubscribed``)."""

    peerhost: str
    peername: str
    topic: str
    qos: int
    unsub_props: dict[str, Any]
    client_attrs: dict[str, str] = EMPTY_ATTRS


def event_name(struct: type[msgspec.Struct]) -> str:
    """The EMQX event name of an event struct: its ``event`` tag."""
    tag = struct.__struct_config__.tag
    assert isinstance(tag, str), f"{struct.__name__} has no event tag"
    return tag
