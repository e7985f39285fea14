"""CONNECT negotiation (sections 3.1 and 3.2): what the broker grants a client, or why it refuses.

This module owns the decisions about one CONNECT packet against the broker's settings, and
nothing else: ``negotiate`` reads the packet and ``MqttConfig`` and returns the ``Terms`` (client
id, session expiry, keepalive, limits, the CONNACK properties that say what was changed), or
raises ``ConnectRefused`` with the CONNACK reason code, or ``ProtocolError`` for a packet no
CONNACK may answer. It has no state and touches no connection: ``Connection`` applies the terms
(authentication, the session, CONNACK, events).
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any, NamedTuple

from mqhook.errors import MqhookError, ProtocolError
from mqhook.mqtt import packets as P
from mqhook.mqtt import reason as R
from mqhook.mqtt.topics import validate_topic_name

if TYPE_CHECKING:
    from mqhook.broker.settings import MqttConfig

__all__ = ["NEVER_EXPIRES", "ConnectRefused", "Terms", "negotiate"]

NEVER_EXPIRES = 0xFFFFFFFF  # Session Expiry Interval: the session never expires (section 3.1.2.11.2)
_MAX_PACKET = 268435455  # the protocol's largest packet, when the client names no Maximum-Packet-Size


class ConnectRefused(MqhookError):
    """The CONNECT is refused: CONNACK with ``code`` (an MQTT 5 reason code), then the connection closes."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(text)
        self.code = code


class Terms(NamedTuple):
    """What the broker grants one CONNECT."""

    client_id: str
    assigned: bool  # the broker chose the client id (v5: Assigned-Client-Identifier)
    expiry: int  # Session Expiry Interval granted, seconds
    keepalive: int  # seconds, after the broker's cut
    receive_maximum: int  # the client's Receive-Maximum: our inflight window to it
    max_packet_out: int  # the client's Maximum-Packet-Size: our largest packet to it
    ack_props: dict[str, Any]  # CONNACK properties (v5): what the broker changed and its limits


def negotiate(p: P.Connect, cfg: MqttConfig) -> Terms:
    """The terms for ``p``; raises ``ConnectRefused`` or ``ProtocolError``."""
    client_id, assigned = _client_id(p, cfg)
    _check_will(p, cfg)
    props = p.properties
    if "Authentication-Method" in props:
        raise ConnectRefused(R.BAD_AUTHENTICATION_METHOD, "enhanced authentication is not supported")
    receive_max = props.get("Receive-Maximum", 65535)
    max_packet = props.get("Maximum-Packet-Size", _MAX_PACKET)
    if receive_max == 0 or max_packet == 0:
        raise ProtocolError(
            R.PROTOCOL_ERROR, "Receive Maximum and Maximum Packet Size must not be 0 (sections 3.1.2.11.3, 3.1.2.11.4)"
        )
    ack_props: dict[str, Any] = {}
    expiry = _session_expiry(p, cfg, ack_props)
    keepalive = p.keepalive
    if cfg.server_keepalive and p.proto_level == 5:
        keepalive = cfg.server_keepalive  # the client must use it [MQTT-3.2.2-21], even if it asked for 0
        ack_props["Server-Keep-Alive"] = keepalive
    elif keepalive > cfg.max_keepalive:
        keepalive = cfg.max_keepalive
        ack_props["Server-Keep-Alive"] = keepalive  # [MQTT-3.2.2-21]
    if p.proto_level == 5:
        _v5_connack_props(cfg, ack_props, client_id if assigned else None)
    return Terms(client_id, assigned, expiry, keepalive, receive_max, max_packet, ack_props)


def _client_id(p: P.Connect, cfg: MqttConfig) -> tuple[str, bool]:
    """The client id, or a server-assigned one for an empty id where the version allows it."""
    cid = p.client_id
    if len(cid) > cfg.max_clientid_len:
        raise ConnectRefused(
            R.CLIENT_IDENTIFIER_NOT_VALID, f"client id of {len(cid)} characters exceeds {cfg.max_clientid_len}"
        )
    if cid:
        return cid, False
    if p.proto_level == 3:
        raise ConnectRefused(R.CLIENT_IDENTIFIER_NOT_VALID, "MQTT 3.1 requires a client id of 1 to 23 characters")
    if p.proto_level == 4 and not p.clean_start:
        raise ConnectRefused(R.CLIENT_IDENTIFIER_NOT_VALID, "an empty client id needs Clean Session = 1 [MQTT-3.1.3-8]")
    return "mqhook-" + secrets.token_hex(8), True


def _check_will(p: P.Connect, cfg: MqttConfig) -> None:
    will = p.will
    if will is None:
        return
    try:
        validate_topic_name(will.topic)
    except ProtocolError as exc:
        raise ConnectRefused(R.TOPIC_NAME_INVALID, f"will topic: {exc}") from exc
    if will.qos > cfg.max_qos:
        raise ConnectRefused(
            R.QOS_NOT_SUPPORTED, f"will QoS {will.qos} exceeds Maximum QoS {cfg.max_qos} [MQTT-3.2.2-12]"
        )
    if will.retain and not cfg.retain_available:
        raise ConnectRefused(R.RETAIN_NOT_SUPPORTED, "will retain is not supported [MQTT-3.2.2-13]")


def _session_expiry(p: P.Connect, cfg: MqttConfig, ack_props: dict[str, Any]) -> int:
    """Seconds the session outlives the connection; 3.1.1 persistent sessions use the server maximum."""
    if p.proto_level < 5:
        return 0 if p.clean_start else cfg.max_session_expiry_interval
    asked = p.properties.get("Session-Expiry-Interval", 0)
    limit = cfg.max_session_expiry_interval
    if asked > limit or (asked == NEVER_EXPIRES and limit != NEVER_EXPIRES):
        ack_props["Session-Expiry-Interval"] = limit  # the client must use the server's value (section 3.2.2.3.2)
        return limit
    return int(asked)


def _v5_connack_props(cfg: MqttConfig, props: dict[str, Any], assigned: str | None) -> None:
    props["Receive-Maximum"] = cfg.receive_maximum
    props["Maximum-Packet-Size"] = cfg.max_packet_size
    props["Topic-Alias-Maximum"] = cfg.topic_alias_maximum
    if cfg.max_qos < 2:
        props["Maximum-QoS"] = cfg.max_qos
    if not cfg.retain_available:
        props["Retain-Available"] = 0
    if not cfg.wildcard_subscription_available:
        props["Wildcard-Subscription-Available"] = 0
    if not cfg.shared_subscription_available:
        props["Shared-Subscription-Available"] = 0
    if assigned:
        props["Assigned-Client-Identifier"] = assigned
