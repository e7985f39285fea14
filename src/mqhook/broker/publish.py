"""PUBLISH from a client (section 3.3): topic aliases, expiry, QoS 2 receipt, authorization, routing, acks."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mqhook.broker.message import HOP_BY_HOP, Message
from mqhook.errors import ProtocolError
from mqhook.mqtt import packets as P
from mqhook.mqtt import reason as R

if TYPE_CHECKING:
    from mqhook.broker.connection import Connection


def handle_publish(conn: Connection, p: P.Publish) -> None:
    qos = p.qos
    if qos > conn.config.max_qos:
        raise ProtocolError(R.QOS_NOT_SUPPORTED, f"PUBLISH QoS {qos} exceeds the server's Maximum QoS")
    if p.retain and not conn.config.retain_available:
        raise ProtocolError(
            R.RETAIN_NOT_SUPPORTED, "retained messages are not supported (Retain Available is 0) [MQTT-3.3.1-8]"
        )
    topic = p.topic
    props = p.properties
    expiry_at = None
    if props:
        topic = _resolve_alias(conn, topic, props)
        expiry = props.get("Message-Expiry-Interval")
        if expiry is not None:
            expiry_at = conn.broker.clock.time() + expiry
        for key in HOP_BY_HOP:
            props.pop(key, None)
    conn.stats.messages_received[qos] += 1
    session = conn.session
    assert session is not None
    pid: int = p.packet_id or 0
    broker = conn.broker
    msg = Message(
        topic,
        p.payload,
        qos,
        p.retain,
        props,
        conn.client_id,
        expiry_at,
        conn.username,
        conn.peerhost,
        p.dup,
        conn.link.peername,
    )
    if qos == 2:
        if pid in session.awaiting_rel:
            # A retransmission before PUBREL: acknowledge, never route twice [MQTT-4.3.3-10].
            broker.message_dropped(msg, "packet_identifier_inuse")
            conn._send(P.Pubrec(pid))
            return
        if len(session.awaiting_rel) >= conn.config.receive_maximum:
            broker.message_dropped(msg, "receive_maximum_exceeded")
            raise ProtocolError(R.RECEIVE_MAXIMUM_EXCEEDED, "more unacknowledged QoS 2 PUBLISH than Receive Maximum")
    if not conn._authorized(topic):
        if qos:  # v5 says why; 3.1.1 has no negative PUBACK, so the message is acked and dropped
            code = R.NOT_AUTHORIZED if conn.v5 else 0
            conn._send(P.Puback(pid, code) if qos == 1 else P.Pubrec(pid, code))
        return
    n = broker.publish(msg)
    if qos == 1:
        code = R.NO_MATCHING_SUBSCRIBERS if n == 0 and conn.v5 else 0
        conn._send(P.Puback(pid, code))
    elif qos == 2:
        awaiting = session.awaiting_rel
        if not isinstance(awaiting, set):
            awaiting = session.awaiting_rel = set()  # the shared empty frozenset is never written
        awaiting.add(pid)
        code = R.NO_MATCHING_SUBSCRIBERS if n == 0 and conn.v5 else 0
        conn._send(P.Pubrec(pid, code))


def _resolve_alias(conn: Connection, topic: str, props: dict[str, Any]) -> str:
    """Inbound Topic Alias (section 3.3.2.3.4): set on a named PUBLISH, used on an empty one."""
    alias = props.get("Topic-Alias")
    if alias is None:
        if not topic:
            raise ProtocolError(R.PROTOCOL_ERROR, "PUBLISH with an empty topic and no Topic Alias")
        return topic
    if alias == 0 or alias > conn.config.topic_alias_maximum:
        raise ProtocolError(
            R.TOPIC_ALIAS_INVALID, f"Topic Alias {alias} is outside 1..{conn.config.topic_alias_maximum}"
        )
    if topic:
        if conn.aliases is None:
            conn.aliases = {}
        conn.aliases[alias] = topic
        return topic
    known = conn.aliases.get(alias) if conn.aliases is not None else None
    if known is None:
        raise ProtocolError(R.PROTOCOL_ERROR, f"Topic Alias {alias} was never set on this connection")
    return known
