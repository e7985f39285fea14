"""Builders: the broker's objects at a hook point -> one event struct, as EMQX 5.8.9 fills it.

This module owns where each field's value comes from. There is one builder per
hook point in ``mqhook.hooks``; each takes the hook's arguments, then ``node``
(the node name for the envelope) and, for message events, the payload encoding.
Field sources follow ``emqx_rule_events`` (EMQX v5.8.9, ``eventmsg_*``):

- ``timestamp``: wall clock in ms when the event is built (``with_basic_columns/3``);
- ``id``: ``Message.id``, made once per message, so every event about one
  message carries the same id (``emqx_guid:to_hexstr/1``: 32 uppercase hex);
- ``publish_received_at``: when the broker accepted the PUBLISH, in ms;
- delivered / acked / delivery.dropped: ``clientid``, ``username``, ``peerhost``
  and ``peername`` describe the RECEIVER (its ClientInfo), ``from_clientid`` and
  ``from_username`` the publisher; ``qos`` is the QoS of the copy;
- absent values are ``"undefined"`` (anonymous ``username``, ``mountpoint``,
  an offline receiver's address);
- ``*_props`` via ``props.printable_props``; ``client_attrs`` is always ``{}``.

Payload encodings (``encode_payload``): ``"plain"`` decodes UTF-8 with U+FFFD for
invalid bytes, exactly what EMQX's JSON encoder does, so binary payloads are lost;
``"base64"`` is standard base64 of the raw bytes, so they survive.
"""

from __future__ import annotations

import time
from binascii import b2a_base64
from typing import TYPE_CHECKING, Any

from mqhook.events.model import (
    UNDEFINED,
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
    flags,
)
from mqhook.events.props import printable_props
from mqhook.mqtt.reason import NAMES as REASON_NAMES

if TYPE_CHECKING:
    from mqhook.broker.connection import Connection
    from mqhook.broker.message import Message
    from mqhook.broker.session import Session

__all__ = [
    "BASE64",
    "PAYLOAD_ENCODINGS",
    "PLAIN",
    "check_authn_complete",
    "check_authz_complete",
    "client_connack",
    "client_connected",
    "client_disconnected",
    "delivery_dropped",
    "encode_payload",
    "message_acked",
    "message_delivered",
    "message_dropped",
    "message_publish",
    "now_ms",
    "session_subscribed",
    "session_unsubscribed",
]

PLAIN = "plain"
BASE64 = "base64"
PAYLOAD_ENCODINGS = frozenset({PLAIN, BASE64})

# mqhook has no listener mountpoints and no MQTT bridge clients yet: EMQX's values for that case.
MOUNTPOINT = UNDEFINED
IS_BRIDGE = False
# Message has no publisher peername yet: EMQX prints "undefined" when the header is absent.


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def encode_payload(payload: bytes, encoding: str) -> str:
    """The ``payload`` string for one encoding (``"plain"`` or ``"base64"``)."""
    if encoding == PLAIN:
        return payload.decode("utf-8", "replace")
    if encoding == BASE64:
        return b2a_base64(payload, newline=False).decode("ascii")
    raise ValueError(f"payload encoding {encoding!r} is not one of {sorted(PAYLOAD_ENCODINGS)}")


def _name(value: str | None) -> str:
    return UNDEFINED if value is None else value


# -- message events ---------------------------------------------------------------------------


def message_publish(msg: Message, node: str, payload_encoding: str = PLAIN) -> MessagePublish:
    return MessagePublish(
        timestamp=now_ms(),
        node=node,
        id=msg.id,
        clientid=msg.sender,
        username=_name(msg.username),
        payload=encode_payload(msg.payload, payload_encoding),
        peerhost=msg.peerhost,
        peername=msg.peername,
        topic=msg.topic,
        qos=msg.qos,
        flags=flags(msg.retain, msg.dup),
        pub_props=printable_props(msg.properties),
        publish_received_at=int(msg.received_at * 1000),
    )


def message_dropped(msg: Message, reason: str, node: str, payload_encoding: str = PLAIN) -> MessageDropped:
    return MessageDropped(
        timestamp=now_ms(),
        node=node,
        id=msg.id,
        reason=reason,
        clientid=msg.sender,
        username=_name(msg.username),
        payload=encode_payload(msg.payload, payload_encoding),
        peerhost=msg.peerhost,
        peername=msg.peername,
        topic=msg.topic,
        qos=msg.qos,
        flags=flags(msg.retain, msg.dup),
        pub_props=printable_props(msg.properties),
        publish_received_at=int(msg.received_at * 1000),
    )


def _receiver(session: Session) -> tuple[str, str, str]:
    """(username, peerhost, peername) of a subscriber, from its latest connection (EMQX keeps its ClientInfo)."""
    username, peerhost, peername = session.client_info
    return _name(username), peerhost, peername


def _delivery(session: Session, msg: Message, qos: int, retain: bool, node: str, encoding: str) -> dict[str, Any]:
    """The fields delivered, acked and delivery.dropped share: the receiver's view of one copy."""
    username, peerhost, peername = _receiver(session)
    return {
        "timestamp": now_ms(),
        "node": node,
        "id": msg.id,
        "from_clientid": msg.sender,
        "from_username": _name(msg.username),
        "clientid": session.client_id,
        "username": username,
        "payload": encode_payload(msg.payload, encoding),
        "peerhost": peerhost,
        "peername": peername,
        "topic": msg.topic,
        "qos": qos,
        "flags": flags(retain, msg.dup),
        "pub_props": printable_props(msg.properties),
        "publish_received_at": int(msg.received_at * 1000),
    }


def message_delivered(
    session: Session, msg: Message, qos: int, retain: bool, node: str, payload_encoding: str = PLAIN
) -> MessageDelivered:
    """``flags.retain`` is the flag of the copy sent (Retain As Published applied), as in EMQX."""
    return MessageDelivered(**_delivery(session, msg, qos, retain, node, payload_encoding))


def message_acked(
    session: Session,
    msg: Message,
    qos: int,
    puback_props: dict[str, Any],
    node: str,
    payload_encoding: str = PLAIN,
) -> MessageAcked:
    """``flags.retain`` is the message's own flag: the hook does not pass the copy's."""
    fields = _delivery(session, msg, qos, msg.retain, node, payload_encoding)
    return MessageAcked(puback_props=printable_props(puback_props), **fields)


def delivery_dropped(
    session: Session, msg: Message, qos: int, reason: str, node: str, payload_encoding: str = PLAIN
) -> DeliveryDropped:
    return DeliveryDropped(reason=reason, **_delivery(session, msg, qos, msg.retain, node, payload_encoding))


# -- client and session events ----------------------------------------------------------------


def _peername(conn: Connection) -> str:
    return conn.link.peername or UNDEFINED


def _sockname(conn: Connection) -> str:
    return conn.link.sockname or UNDEFINED


def _receive_maximum(conn: Connection) -> int:
    # EMQX (emqx_channel:receive_maximum/2): min(client's Receive-Maximum, max_inflight); the
    # client's value defaults to max_inflight, so a 3.1.1 client shows max_inflight (32 by default).
    limit = conn.config.max_inflight
    return min(conn.receive_maximum, limit)


def _expiry_seconds(conn: Connection) -> int:
    """Session expiry as granted (the session's), else as asked in CONNECT (a refused CONNECT)."""
    session = conn.session
    if session is not None:
        return session.expiry_interval
    return int(conn.connect_props.get("Session-Expiry-Interval", 0)) if conn.level == 5 else 0


def client_connected(conn: Connection, node: str) -> ClientConnected:
    return ClientConnected(
        timestamp=now_ms(),
        node=node,
        clientid=conn.client_id,
        username=_name(conn.username),
        mountpoint=MOUNTPOINT,
        peername=_peername(conn),
        sockname=_sockname(conn),
        proto_name=conn.proto_name,
        proto_ver=conn.level,
        keepalive=conn.keepalive,
        clean_start=conn.clean_start,
        receive_maximum=_receive_maximum(conn),
        expiry_interval=_expiry_seconds(conn),  # seconds: EMQX divides its ms value by 1000 here
        is_bridge=IS_BRIDGE,
        conn_props=printable_props(conn.connect_props),
        connected_at=conn.connected_at,
    )


def client_connack(conn: Connection, reason_code: int, node: str) -> ClientConnack:
    """``reason_code`` is named with the MQTT 5 names for every protocol version, as EMQX does."""
    return ClientConnack(
        timestamp=now_ms(),
        node=node,
        reason_code=REASON_NAMES.get(reason_code, "unspecified_error"),
        clientid=conn.client_id,
        clean_start=conn.clean_start,
        username=_name(conn.username),
        peername=_peername(conn),
        sockname=_sockname(conn),
        proto_name=conn.proto_name,
        proto_ver=conn.level,
        keepalive=conn.keepalive,
        # MILLISECONDS: EMQX 5.8.9 eventmsg_connack passes conninfo's ms value through, while
        # eventmsg_connected divides it by 1000. Receivers written for EMQX expect exactly this.
        expiry_interval=_expiry_seconds(conn) * 1000,
        conn_props=printable_props(conn.connect_props),
    )


def client_disconnected(conn: Connection, reason: str, disconn_props: dict[str, Any], node: str) -> ClientDisconnected:
    now = now_ms()
    return ClientDisconnected(
        timestamp=now,
        node=node,
        reason=reason,
        clientid=conn.client_id,
        username=_name(conn.username),
        peername=_peername(conn),
        sockname=_sockname(conn),
        proto_name=conn.proto_name,
        proto_ver=conn.level,
        disconn_props=printable_props(disconn_props),
        disconnected_at=now,
        connected_at=conn.connected_at,
    )


def check_authz_complete(
    conn: Connection, topic: str, action: str, result: str, source: str, node: str
) -> CheckAuthzComplete:
    return CheckAuthzComplete(
        timestamp=now_ms(),
        node=node,
        clientid=conn.client_id,
        username=_name(conn.username),
        peername=_peername(conn),
        peerhost=conn.peerhost,
        topic=topic,
        action=action,
        authz_source=source,
        result=result,
    )


def check_authn_complete(
    conn: Connection, reason_code: str, is_superuser: bool, is_anonymous: bool, node: str
) -> CheckAuthnComplete:
    return CheckAuthnComplete(
        timestamp=now_ms(),
        node=node,
        clientid=conn.client_id,
        username=_name(conn.username),
        peername=_peername(conn),
        reason_code=reason_code,
        is_anonymous=is_anonymous,
        is_superuser=is_superuser,
    )


def session_subscribed(
    conn: Connection, topic_filter: str, qos: int, sub_props: dict[str, Any], node: str
) -> SessionSubscribed:
    return SessionSubscribed(
        timestamp=now_ms(),
        node=node,
        clientid=conn.client_id,
        username=_name(conn.username),
        peerhost=conn.peerhost,
        peername=_peername(conn),
        topic=topic_filter,
        qos=qos,
        sub_props=printable_props(sub_props),
    )


def session_unsubscribed(
    conn: Connection, topic_filter: str, qos: int, unsub_props: dict[str, Any], node: str
) -> SessionUnsubscribed:
    """``qos`` is the QoS of the subscription removed, as EMQX reports it."""
    return SessionUnsubscribed(
        timestamp=now_ms(),
        node=node,
        clientid=conn.client_id,
        username=_name(conn.username),
        peerhost=conn.peerhost,
        peername=_peername(conn),
        topic=topic_filter,
        qos=qos,
        unsub_props=printable_props(unsub_props),
    )
