"""One client connection's protocol state machine: packets in, packets out through a Link.

The legal (state, packet type) pairs live in one table, ``LEGAL``; anything
else is a protocol error that closes this connection only. The connection
never touches a socket: it writes bytes to its ``Link`` and asks the link to
close or to arm the keepalive timer. ``server/`` implements the Link.
Packet families with a lot to say live beside it (``connect``, ``publish``, ``subscribe``); the
handler table at the end of this module points straight at them.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from mqhook.broker import connect
from mqhook.broker.authz import PUBLISH
from mqhook.broker.message import Message
from mqhook.broker.publish import handle_publish
from mqhook.broker.subscribe import handle_subscribe, handle_unsubscribe
from mqhook.errors import ProtocolError
from mqhook.mqtt import packets as P
from mqhook.mqtt import reason as R
from mqhook.mqtt.encode import encode, encode_publish

if TYPE_CHECKING:
    from mqhook.broker.broker import Broker
    from mqhook.broker.session import Outgoing, Session

log = logging.getLogger("mqhook.connection")

AWAIT_CONNECT = 0
CONNECTED = 1
CLOSED = 2

# [MQTT-3.1.0-1] the first packet is CONNECT; afterwards only client-to-server packets are legal.
_CLIENT_PACKETS = frozenset(
    {P.PUBLISH, P.PUBACK, P.PUBREC, P.PUBREL, P.PUBCOMP, P.SUBSCRIBE, P.UNSUBSCRIBE, P.PINGREQ, P.DISCONNECT, P.AUTH}
)
LEGAL: dict[int, frozenset[int]] = {
    AWAIT_CONNECT: frozenset({P.CONNECT}),
    CONNECTED: _CLIENT_PACKETS,
    CLOSED: frozenset(),
}

# Disconnect reason names (EMQX vocabulary) for the reason codes we close with.
_CLOSE_REASONS = {
    R.MALFORMED_PACKET: "malformed_packet",
    R.PACKET_TOO_LARGE: "packet_too_large",
    R.TOPIC_NAME_INVALID: "topic_name_invalid",
    R.TOPIC_ALIAS_INVALID: "topic_alias_invalid",
    R.RECEIVE_MAXIMUM_EXCEEDED: "receive_maximum_exceeded",
    R.KEEP_ALIVE_TIMEOUT: "keepalive_timeout",
    R.SERVER_SHUTTING_DOWN: "server_shutting_down",
    R.NOT_AUTHORIZED: "not_authorized",
}

_PINGRESP = b"\xd0\x00"
_NO_PROPS: dict[str, Any] = {}  # shared, never written: DISCONNECT replaces it with its own dict


class Link(Protocol):
    """What a connection needs from its transport (implemented in ``server/``)."""

    peername: str
    sockname: str

    def write(self, data: bytes) -> None: ...

    def close(self) -> None: ...

    def set_keepalive(self, seconds: float) -> None:
        """Close after ``seconds`` without a packet (``keepalive_expired``); 0 = never."""
        ...


class Connection:
    # Slots and a class-level handler table keep an idle connection small (no per-instance
    # __dict__, no eleven bound methods): memory per connection is a target of its own.
    __slots__ = (
        "aliases",
        "broker",
        "clean_start",
        "client_id",
        "close_reason",
        "config",
        "connect_props",
        "connected_at",
        "disconnect_props",
        "keepalive",
        "level",
        "link",
        "max_packet_out",
        "peerhost",
        "proto_name",
        "receive_maximum",
        "saturated",
        "session",
        "state",
        "stats",
        "username",
        "v5",
        "will",
        "will_delay",
    )

    def __init__(self, broker: Broker, link: Link) -> None:
        self.broker = broker
        self.link = link
        self.config = broker.config
        self.stats = broker.stats
        self.state = AWAIT_CONNECT
        self.level = 4
        self.v5 = False
        self.session: Session | None = None
        self.client_id = ""
        self.username: str | None = None
        self.will: P.Will | None = None
        self.will_delay = 0
        self.keepalive = 0
        self.aliases: dict[int, str] | None = None  # inbound topic aliases, made on first use
        self.max_packet_out = 268435455  # the client's Maximum-Packet-Size
        self.saturated = False  # set by the link when the transport's write buffer is full
        self.close_reason = "tcp_closed"
        # What the CONNECT said, kept for events: set by connect.handle_connect.
        self.proto_name = "MQTT"
        self.clean_start = True
        self.connect_props: dict[str, Any] = {}
        self.receive_maximum = 65535
        self.connected_at = 0  # ms
        self.disconnect_props: dict[str, Any] = _NO_PROPS
        self.peerhost = "undefined"  # the link sets it once the socket is known

    # -- input ----------------------------------------------------------------

    def handle(self, packet: P.Packet) -> None:
        """Apply one decoded packet; raises ProtocolError for an illegal one."""
        ptype = packet.type
        if ptype not in LEGAL[self.state]:
            if self.state == CLOSED:
                return
            if ptype == P.CONNECT:
                raise ProtocolError(R.PROTOCOL_ERROR, "a second CONNECT on one connection [MQTT-3.1.0-2]")
            name = P.PACKET_NAMES.get(ptype, str(ptype))
            where = "before CONNECT [MQTT-3.1.0-1]" if self.state == AWAIT_CONNECT else "from a client"
            raise ProtocolError(R.PROTOCOL_ERROR, f"{name} is not allowed {where}")
        _HANDLERS[ptype](self, packet)

    def _on_connect(self, p: P.Connect) -> None:
        connect.handle_connect(self, p)

    def _authorized(self, topic: str, action: str = PUBLISH) -> bool:
        """Ask the authorizer and report the decision (client.check_authz_complete)."""
        broker = self.broker
        allowed = broker.authorizer.check(self, action, topic)
        self.stats.authz[action][1 if allowed else 0] += 1
        hooks = broker.hooks
        if hooks.want_authz:
            hooks.check_authz_complete(self, topic, action, "allow" if allowed else "deny", broker.authorizer.source)
        return allowed

    def _on_puback(self, p: P.Puback) -> None:
        assert self.session is not None
        self._acked(self.session.on_puback(p.packet_id), p.properties)

    def _acked(self, entry: Outgoing | None, props: dict[str, Any]) -> None:
        """A QoS 1 or 2 flow to this client finished (PUBACK / PUBCOMP): message.acked."""
        hooks = self.broker.hooks
        if entry is not None and hooks.want_acked:
            assert self.session is not None
            hooks.message_acked(self.session, entry.msg, entry.qos, props)

    def _on_pubrec(self, p: P.Pubrec) -> None:
        assert self.session is not None
        if self.session.on_pubrec(p.packet_id, p.reason_code >= 0x80):
            if p.reason_code < 0x80:
                self.send_pubrel(p.packet_id)
        else:
            self._send(P.Pubrel(p.packet_id, R.PACKET_IDENTIFIER_NOT_FOUND))

    def _on_pubrel(self, p: P.Pubrel) -> None:
        assert self.session is not None
        awaiting = self.session.awaiting_rel
        if p.packet_id in awaiting and isinstance(awaiting, set):
            awaiting.discard(p.packet_id)
            self._send(P.Pubcomp(p.packet_id))
        else:
            self._send(P.Pubcomp(p.packet_id, R.PACKET_IDENTIFIER_NOT_FOUND))

    def _on_pubcomp(self, p: P.Pubcomp) -> None:
        assert self.session is not None
        self._acked(self.session.on_pubcomp(p.packet_id), p.properties)

    def _on_subscribe(self, p: P.Subscribe) -> None:
        handle_subscribe(self, p)

    def _on_unsubscribe(self, p: P.Unsubscribe) -> None:
        handle_unsubscribe(self, p)

    def _on_pingreq(self, p: P.Pingreq) -> None:
        self.stats.packets_sent[P.PINGRESP] += 1
        self.link.write(_PINGRESP)

    def _on_disconnect(self, p: P.Disconnect) -> None:
        session = self.session
        assert session is not None
        expiry = p.properties.get("Session-Expiry-Interval")
        if expiry is not None:
            if session.expiry_interval == 0 and expiry != 0:
                raise ProtocolError(
                    R.PROTOCOL_ERROR, "Session Expiry Interval set on DISCONNECT after 0 [MQTT-3.14.2-2]"
                )
            session.expiry_interval = min(expiry, self.config.max_session_expiry_interval)
        if p.reason_code != R.DISCONNECT_WITH_WILL:
            self.will = None  # a normal DISCONNECT discards the will [MQTT-3.14.4-3]
        # EMQX: reason code 0 is "normal"; any other code the client sends is reported by its name.
        self.close_reason = "normal" if p.reason_code == 0 else R.NAMES.get(p.reason_code, "unspecified_error")
        self.disconnect_props = p.properties
        self._finish()

    def _on_auth(self, p: P.Auth) -> None:
        raise ProtocolError(R.PROTOCOL_ERROR, "AUTH without an Authentication Method in CONNECT [MQTT-4.12.0-1]")

    # -- output ---------------------------------------------------------------

    def _send(self, packet: P.Packet) -> None:
        data = encode(packet, self.level)
        if data:
            self.stats.packets_sent[packet.type] += 1
            self.link.write(data)

    def send_pubrel(self, pid: int) -> None:
        self._send(P.Pubrel(pid))

    def send_publish(
        self, msg: Message, qos: int, retain: bool, pid: int | None, sub_id: int | None, dup: bool
    ) -> bool:
        """Encode and write one PUBLISH; False if it cannot be sent (expired or over the client's limit)."""
        props = msg.properties
        if msg.expiry_at is not None:
            left = msg.expiry_at - self.broker.clock.time()
            if left <= 0:
                if self.session is not None:
                    self.session.dropped(msg, qos, "expired")
                return False
            props = dict(props)
            props["Message-Expiry-Interval"] = math.ceil(left)  # decremented [MQTT-3.3.2-6]
        if sub_id is not None and self.v5:
            props = dict(props)
            props["Subscription-Identifier"] = [sub_id]
        data = encode_publish(msg.topic, msg.payload, qos, retain, dup, pid, props, self.level)
        if len(data) > self.max_packet_out:
            self.stats.deliveries_dropped["too_large"] += 1  # [MQTT-3.1.2-25]
            return False
        self.stats.packets_sent[P.PUBLISH] += 1
        self.stats.messages_sent[qos] += 1
        self.link.write(data)
        hooks = self.broker.hooks
        if hooks.want_delivered and self.session is not None:
            hooks.message_delivered(self.session, msg, qos, retain)
        return True

    # -- closing --------------------------------------------------------------

    def protocol_error(self, exc: ProtocolError) -> None:
        """Close this connection for a peer's violation; v5 says why in a DISCONNECT first."""
        if self.state == CLOSED:
            return
        log.info("closing %s (%s): %s", self.client_id or self.link.peername, R.NAMES.get(exc.reason_code), exc)
        self.close_reason = _CLOSE_REASONS.get(exc.reason_code, "protocol_error")
        if self.state == CONNECTED and self.v5:
            self._send_disconnect(exc.reason_code, str(exc))
        self._finish()

    def keepalive_expired(self) -> None:
        """No packet within 1.5x the keepalive [MQTT-3.1.2-22]."""
        if self.state != CONNECTED:
            self.close_reason = "keepalive_timeout"
            self._finish()
            return
        self.protocol_error(ProtocolError(R.KEEP_ALIVE_TIMEOUT, f"no packet within 1.5 x keepalive {self.keepalive}s"))

    def taken_over(self, reason: str) -> None:
        """Another connection claims this client id [MQTT-3.1.4-3]."""
        if self.state != CONNECTED:
            return
        self.close_reason = reason
        if self.v5:
            self._send_disconnect(R.SESSION_TAKEN_OVER, "another connection took over this session")
        self._finish()

    def shut_down(self) -> None:
        if self.state != CONNECTED:
            self.state = CLOSED
            self.link.close()
            return
        self.close_reason = "server_shutting_down"
        if self.v5:
            self._send_disconnect(R.SERVER_SHUTTING_DOWN, "server shutting down")
        self._finish()

    def _send_disconnect(self, code: int, text: str) -> None:
        self._send(P.Disconnect(code, {"Reason-String": text[:256]}))

    def connection_lost(self) -> None:
        """The transport is gone (peer closed or we closed it)."""
        if self.state != CLOSED:
            self._finish()

    def _finish(self) -> None:
        """Leave CONNECTED exactly once: publish or schedule the will, detach the session, close."""
        was = self.state
        self.state = CLOSED
        self.broker.connections.discard(self)
        session = self.session
        if was == CONNECTED and session is not None:
            if self.will is not None:
                delay = min(self.will_delay, session.expiry_interval)
                self.broker.schedule_will(session, self.will, delay)
                self.will = None
            self.stats.count_disconnect(self.close_reason)
            hooks = self.broker.hooks
            if hooks.want_disconnected:
                hooks.client_disconnected(self, self.close_reason, self.disconnect_props)
            self.broker.detach(session, self)
        self.link.close()


_HANDLERS: dict[int, Callable[[Connection, Any], None]] = {
    P.CONNECT: Connection._on_connect,
    P.PUBLISH: handle_publish,
    P.PUBACK: Connection._on_puback,
    P.PUBREC: Connection._on_pubrec,
    P.PUBREL: Connection._on_pubrel,
    P.PUBCOMP: Connection._on_pubcomp,
    P.SUBSCRIBE: Connection._on_subscribe,
    P.UNSUBSCRIBE: Connection._on_unsubscribe,
    P.PINGREQ: Connection._on_pingreq,
    P.DISCONNECT: Connection._on_disconnect,
    P.AUTH: Connection._on_auth,
}
