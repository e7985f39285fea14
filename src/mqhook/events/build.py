"""Builders of the client and session events: the broker's objects at a hook point -> one event struct.

This module owns where each field of those seven events comes from. There is one builder per
client or session hook point of ``mqhook.broker.hooks``; each takes ``node`` (the node name for the
envelope), then the hook point's arguments. The five message events are not built here:
``writer`` writes their JSON straight from the ``Message``. Field sources follow ``emqx_rule_events``
(EMQX v5.8.9, ``eventmsg_*``):

- ``timestamp``: wall clock in ms when the event is built (``with_basic_columns/3``);
- absent values are ``"undefined"`` (anonymous ``username``, ``mountpoint``, an unknown address);
- ``*_props`` via ``props.printable_props``; ``client_attrs`` is always ``{}``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from mqhook.events.model import (
    UNDEFINED,
    CheckAuthnComplete,
    CheckAuthzComplete,
    ClientConnack,
    ClientConnected,
    ClientDisconnected,
    SessionSubscribed,
    SessionUnsubscribed,
)
from mqhook.events.props import printable_props
from mqhook.mqtt.reason import NAMES as REASON_NAMES

if TYPE_CHECKING:
    from mqhook.broker.connection import Connection

__all__ = [
    "check_authn_complete",
    "check_authz_complete",
    "client_connack",
    "client_connected",
    "client_disconnected",
    "now_ms",
    "session_subscribed",
    "session_unsubscribed",
]

# mqhook has no listener mountpoints and no MQTT bridge clients yet: EMQX's values for that case.
MOUNTPOINT = UNDEFINED
IS_BRIDGE = False


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def _name(value: str | None) -> str:
    return UNDEFINED if value is None else value


# -- client and session events ----------------------------------------------------------------


def _peername(conn: Connection) -> str:
    return conn.peername or UNDEFINED


def _sockname(conn: Connection) -> str:
    return conn.sockname or UNDEFINED


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


def client_connected(node: str, conn: Connection) -> ClientConnected:
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


def client_connack(node: str, conn: Connection, reason_code: int) -> ClientConnack:
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


def client_disconnected(node: str, conn: Connection, reason: str, disconn_props: dict[str, Any]) -> ClientDisconnected:
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
    node: str, conn: Connection, topic: str, action: str, result: str, source: str
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
    node: str, conn: Connection, reason_code: str, is_superuser: bool, is_anonymous: bool
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


def _subscription(node: str, conn: Connection, topic_filter: str, qos: int) -> dict[str, Any]:
    """The fields session.subscribed and session.unsubscribed share."""
    return {
        "timestamp": now_ms(),
        "node": node,
        "clientid": conn.client_id,
        "username": _name(conn.username),
        "peerhost": conn.peerhost,
        "peername": _peername(conn),
        "topic": topic_filter,
        "qos": qos,
    }


def session_subscribed(
    node: str, conn: Connection, topic_filter: str, qos: int, sub_props: dict[str, Any]
) -> SessionSubscribed:
    return SessionSubscribed(sub_props=printable_props(sub_props), **_subscription(node, conn, topic_filter, qos))


def session_unsubscribed(
    node: str, conn: Connection, topic_filter: str, qos: int, unsub_props: dict[str, Any]
) -> SessionUnsubscribed:
    """``qos`` is the QoS of the subscription removed, as EMQX reports it."""
    return SessionUnsubscribed(unsub_props=printable_props(unsub_props), **_subscription(node, conn, topic_filter, qos))
