"""CONNECT handling: validation, session open or resume, CONNACK (sections 3.1 and 3.2)."""

from __future__ import annotations

import secrets
import time
from typing import TYPE_CHECKING, Any

from mqhook.broker.broker import NEVER_EXPIRES
from mqhook.errors import ProtocolError
from mqhook.mqtt import packets as P
from mqhook.mqtt import reason as R
from mqhook.mqtt.topics import validate_topic_name

if TYPE_CHECKING:
    from mqhook.broker.connection import Connection
    from mqhook.broker.settings import MqttConfig


class Refused(Exception):
    """CONNECT is refused with a CONNACK reason code, then the connection is closed."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(text)
        self.code = code


def handle_connect(conn: Connection, p: P.Connect) -> None:
    from mqhook.broker.connection import CONNECTED

    cfg = conn.config
    conn.level = p.proto_level
    conn.v5 = p.proto_level == 5
    conn.client_id = p.client_id
    conn.username = p.username
    conn.proto_name = p.proto_name
    conn.clean_start = p.clean_start
    conn.keepalive = p.keepalive
    conn.connect_props = p.properties
    hooks = conn.broker.hooks
    try:
        client_id, assigned = _client_id(p, cfg)
        _check_will(p, cfg)
        if "Authentication-Method" in p.properties:
            raise Refused(R.BAD_AUTHENTICATION_METHOD, "enhanced authentication is not supported")
    except Refused as exc:
        conn.stats.count_connect(R.NAMES.get(exc.code, "unspecified_error"))
        if hooks.want_connack:
            hooks.client_connack(conn, exc.code)
        conn._send(P.Connack(False, exc.code, {"Reason-String": str(exc)} if conn.v5 else None))
        conn.close_reason = R.NAMES.get(exc.code, "protocol_error")
        conn._finish()
        return
    props = p.properties
    receive_max = props.get("Receive-Maximum", 65535)
    max_packet = props.get("Maximum-Packet-Size", 268435455)
    if receive_max == 0 or max_packet == 0:
        raise ProtocolError(
            R.PROTOCOL_ERROR, "Receive Maximum and Maximum Packet Size must not be 0 (sections 3.1.2.11.3, 3.1.2.11.4)"
        )
    ack_props: dict[str, Any] = {}
    expiry = _session_expiry(p, cfg, ack_props)
    keepalive = p.keepalive
    if keepalive > cfg.max_keepalive:
        keepalive = cfg.max_keepalive
        ack_props["Server-Keep-Alive"] = keepalive  # [MQTT-3.2.2-21]
    conn.client_id = client_id
    conn.keepalive = keepalive
    conn.max_packet_out = max_packet
    conn.receive_maximum = receive_max
    conn.connected_at = int(time.time() * 1000)
    if hooks.want_authn:  # no authenticators yet: everyone is let in anonymously
        hooks.check_authn_complete(conn, "success", False, True)
    if p.will is not None:
        conn.will = p.will
        conn.will_delay = p.will.properties.get("Will-Delay-Interval", 0)
    broker = conn.broker
    session, present = broker.open_session(conn, client_id, p.clean_start, expiry)
    session.inflight_max = min(receive_max, cfg.max_inflight)
    session.client_info = (conn.username, conn.peerhost, conn.link.peername)
    conn.session = session
    conn.state = CONNECTED
    broker.connections.add(conn)
    conn.stats.count_connect("success")
    if conn.v5:
        _v5_connack_props(cfg, ack_props, assigned and client_id)
    if hooks.want_connected:
        hooks.client_connected(conn)
    if hooks.want_connack:
        hooks.client_connack(conn, R.SUCCESS)
    conn._send(P.Connack(present, R.SUCCESS, ack_props))
    conn.link.set_keepalive(keepalive * 1.5)  # keepalive 0 turns the check off (section 3.1.2.10)
    session.resume(conn)


def _client_id(p: P.Connect, cfg: MqttConfig) -> tuple[str, bool]:
    """The client id, or a server-assigned one for an empty id where the version allows it."""
    cid = p.client_id
    if len(cid) > cfg.max_clientid_len:
        raise Refused(
            R.CLIENT_IDENTIFIER_NOT_VALID, f"client id of {len(cid)} characters exceeds {cfg.max_clientid_len}"
        )
    if cid:
        return cid, False
    if p.proto_level == 3:
        raise Refused(R.CLIENT_IDENTIFIER_NOT_VALID, "MQTT 3.1 requires a client id of 1 to 23 characters")
    if p.proto_level == 4 and not p.clean_start:
        raise Refused(R.CLIENT_IDENTIFIER_NOT_VALID, "an empty client id needs Clean Session = 1 [MQTT-3.1.3-8]")
    return "mqhook-" + secrets.token_hex(8), True


def _check_will(p: P.Connect, cfg: MqttConfig) -> None:
    will = p.will
    if will is None:
        return
    try:
        validate_topic_name(will.topic)
    except ProtocolError as exc:
        raise Refused(R.TOPIC_NAME_INVALID, f"will topic: {exc}") from exc
    if will.qos > cfg.max_qos:
        raise Refused(R.QOS_NOT_SUPPORTED, f"will QoS {will.qos} exceeds Maximum QoS {cfg.max_qos} [MQTT-3.2.2-12]")
    if will.retain and not cfg.retain_available:
        raise Refused(R.RETAIN_NOT_SUPPORTED, "will retain is not supported [MQTT-3.2.2-13]")


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


def _v5_connack_props(cfg: MqttConfig, props: dict[str, Any], assigned: str | bool) -> None:
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
