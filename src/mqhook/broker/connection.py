"""One client connection's protocol state (EMQX's channel): packets in, bytes out through a Link.

This module owns what the broker does for one MQTT connection, from accept to close: the legal
(state, packet type) pairs (``LEGAL``; anything else is a protocol error that closes this
connection only), the handling of every packet, the CONNECT deadline and the keepalive (timers
on the broker's clock), the will, backpressure on a publisher, and what is reported to the hook
points. Pure decisions live beside it: ``connect.negotiate`` (what a CONNECT is granted) and
``auth`` (who may connect, publish, subscribe).

Flow control, per connection:

- a PUBLISH that fed a holder of ``Backpressure`` (a webhook over its high water, a QoS 1/2
  subscriber a window behind) makes the connection *hold* what the client sends next, in order,
  until those holders have caught up; acknowledgements of our PUBLISHes and PINGREQ are still
  handled at once (they change nothing of the held packets' meaning), so the client's keepalive
  and its subscriptions' windows are served. Past ``HOLD_BYTES`` held, the link stops reading:
  TCP slows the client down;
- while the transport's write buffer is over its high-water mark (a client that does not read
  what we send), the link stops reading too, so such a client cannot grow the broker: memory per
  connection stays bounded by the read and write buffer limits;
- a client over ``messages_rate`` or ``bytes_rate`` in its one-second window is not read until
  the window it needs (``_over_rate``, a timer on the broker's clock): slowed, nothing dropped.

It never touches a socket. Its transport is a ``Link`` (``mqhook.server`` implements it): the
connection writes bytes to it, closes it, and stops and resumes reading from it. The edge calls
the public methods only: ``handle`` for each decoded packet, ``protocol_error`` for bytes that do
not decode, ``pause_writing`` / ``resume_writing`` as the transport's write buffer fills and
drains, and ``connection_lost``. The broker calls ``taken_over`` and ``shut_down``; the session
calls ``send_publish`` and ``send_pubrel``. Listeners (events, authentication, authorization)
read the public attributes listed on the class and change none of them.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

from mqhook.broker.aliases import AliasBytesExceeded, InboundAliases, OutboundAliases
from mqhook.broker.auth import PUBLISH, SUBSCRIBE, Authn
from mqhook.broker.connect import ConnectRefused, negotiate
from mqhook.broker.message import HOP_BY_HOP, Message, SubIds, SubOptions
from mqhook.errors import ProtocolError
from mqhook.mqtt import packets as P
from mqhook.mqtt import reason as R
from mqhook.mqtt.encode import encode, encode_puback, encode_publish
from mqhook.mqtt.topics import parse_shared, validate_topic_filter

if TYPE_CHECKING:
    from mqhook.broker.broker import Broker
    from mqhook.broker.session import Outgoing, Session
    from mqhook.broker.settings import MqttConfig

__all__ = ["AWAIT_CONNECT", "CLOSED", "CONNECTED", "LEGAL", "Connection", "Link"]

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
# SUBSCRIBE refusals that UNSUBSCRIBE ignores: a filter the settings forbid may still be removed.
_SETTINGS_REFUSALS = (R.SHARED_SUBSCRIPTIONS_NOT_SUPPORTED, R.WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED)

# Packets handled even while a connection holds for backpressure: they concern flows from us to the
# client (its acks of our PUBLISHes) or nothing at all (PINGREQ), never a held packet's meaning.
_OUT_OF_ORDER = frozenset({P.PINGREQ, P.PUBACK, P.PUBREC, P.PUBCOMP})
HOLD_BYTES = 262144  # held packet bytes past which the link stops reading
REPLAY_BATCH = 8  # held packets a relieved connection handles before the others' turn
# Why the link does not read (bits of Connection._stopped).
_STOP_HOLD = 1  # backpressure: too much held
_STOP_WRITE = 2  # the transport's write buffer is full: the client does not read
_STOP_RATE = 8  # over messages_rate or bytes_rate: not read until the client's next window
_UNLIMITED = 1 << 62  # what a rate of 0 (no limit) leaves a connection each window
_STOP_AUTH = 4  # the authenticator is deciding on the CONNECT

_PINGRESP = b"\xd0\x00"
# Module constants for packet types read on every packet (one LOAD_GLOBAL, no attribute lookup).
_PUBLISH = P.PUBLISH
_PUBACK = P.PUBACK


def _held_size(packets: list[Any]) -> int:
    """What held packets count against HOLD_BYTES: a PUBLISH its topic and payload, others 16
    (``Connection.handle`` adds one packet's share inline)."""
    return sum(len(p.payload) + len(p.topic) if p.type == _PUBLISH else 16 for p in packets)


_NO_PROPS: dict[str, Any] = {}  # shared, never written: DISCONNECT replaces it with its own dict


def topic_over_limits(topic: str, config: MqttConfig, real: str | None = None) -> str | None:
    """The limit a topic name or filter is over (``max_topic_length`` in UTF-8 bytes, then
    ``max_topic_levels``), or None. ``real``: a shared subscription's filter without its
    ``$share/{group}/``, whose levels are counted."""
    n = len(topic)
    max_length = config.max_topic_length
    if n > max_length or (n * 4 > max_length and len(topic.encode()) > max_length):
        return "max_topic_length"
    if (topic if real is None else real).count("/") >= config.max_topic_levels:
        return "max_topic_levels"
    return None


class Link(Protocol):
    """What a connection needs from its transport (``mqhook.server`` implements it)."""

    peername: str  # "ip:port" of the client, "undefined" if unknown
    sockname: str  # "ip:port" of the listener
    last_rx: float  # the broker clock's time when bytes last arrived (the keepalive reads it)

    def write(self, data: bytes) -> None: ...

    def close(self) -> None:
        """Send what was written, then close; no packet is handed over afterwards."""
        ...

    def pause_reading(self) -> None:
        """Hand over no packet after the current one until ``resume_reading``."""
        ...

    def resume_reading(self) -> None: ...

    def defer(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once the work under way is done (on the event loop's next turn), after
        what was deferred before it."""
        ...

    @property
    def cert_username(self) -> str | None:
        """The user name a verified client certificate gives (TLS listeners with
        ``peer_cert_as_username``), else None."""
        ...


class Connection:
    """One client connection. Public, read-only for everyone but this class: ``state``, ``level``
    (3, 4 or 5), ``v5``, ``client_id``, ``username``, ``peerhost``, ``peername``, ``sockname``,
    ``proto_name``, ``clean_start``, ``keepalive`` (granted), ``receive_maximum``, ``connect_props``,
    ``connected_at`` (ms), ``session``, ``config``, ``saturated`` (the transport's write buffer is
    full) and ``holding`` (backpressure holds what this publisher sends)."""

    # Slots and a class-level handler table keep an idle connection small (no per-instance
    # __dict__, no bound method per packet type): memory per connection is a target of its own.
    __slots__ = (
        "_bytes_left",
        "_handlers",
        "_held",
        "_held_bytes",
        "_msgs_left",
        "_rate_timer",
        "_stopped",
        "_timer",
        "_window_end",
        "aliases",
        "aliases_out",
        "authz_cache",
        "broker",
        "clean_start",
        "client_id",
        "close_reason",
        "config",
        "connect_props",
        "connected_at",
        "disconnect_props",
        "is_anonymous",
        "is_superuser",
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
        "username_from_cert",
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
        self._handlers = _STATE_HANDLERS[AWAIT_CONNECT]  # the handlers of the packets legal in ``state``
        self.level = 4
        self.v5 = False
        self.session: Session | None = None
        self.client_id = ""
        self.username: str | None = None
        self.will: P.Will | None = None
        self.will_delay = 0
        self.keepalive = 0
        self.aliases: InboundAliases | None = None  # the client's topic aliases, made on first use
        self.aliases_out: OutboundAliases | None = None  # ours towards it: v5 clients that allow them
        self.max_packet_out = 268435455  # the client's Maximum-Packet-Size
        self.saturated = False  # the transport's write buffer is over its high-water mark
        self._held: list[P.Packet] | None = None  # packets held, in order, while backpressure holds us
        self._held_bytes = 0
        self._stopped = 0  # why the link does not read: _STOP_* bits
        self.close_reason = "tcp_closed"
        self.is_superuser = False  # set by the authenticator's decision
        self.is_anonymous = True
        self.username_from_cert = False  # the user name is a verified certificate's
        self.authz_cache: Any = None  # the authorizer's cache of this connection's decisions
        # What the CONNECT said, kept for events.
        self.proto_name = "MQTT"
        self.clean_start = True
        self.connect_props: dict[str, Any] = {}
        self.receive_maximum = 65535
        self.connected_at = 0  # ms
        self.disconnect_props: dict[str, Any] = _NO_PROPS
        # Interned: thousands of connections come from a few hosts.
        self.peerhost = sys.intern(link.peername.rpartition(":")[0] or "undefined")
        # messages_rate / bytes_rate: what this client may still send in its current one-second window.
        self._msgs_left = broker.messages_rate or _UNLIMITED
        self._bytes_left = broker.bytes_rate or _UNLIMITED
        self._window_end = broker.clock.time() + 1.0
        self._rate_timer: Any = None  # resumes reading once a window's excess is paid for
        self._timer: Any = None
        broker.sockets += 1
        if not broker.admit_connection(self.peerhost):  # max_conn_rate_per_address: closed before CONNECT
            self.close_reason = "connection_rate_exceeded"
            self._finish()
            return
        # The CONNECT deadline counts from accept, whatever arrives meanwhile.
        self._timer = broker.clock.call_later(self.config.idle_timeout, self._connect_deadline)

    @property
    def holding(self) -> bool:
        """Backpressure holds what this client sends (see the module docstring)."""
        return self._held is not None

    @property
    def peername(self) -> str:
        return self.link.peername

    @property
    def sockname(self) -> str:
        return self.link.sockname

    # -- input ------------------------------------------------------------------------------------

    def handle(self, packet: P.Packet) -> None:
        """Apply one decoded packet; raises ProtocolError for an illegal one."""
        ptype = packet.type
        held = self._held
        if held is not None and (ptype not in _OUT_OF_ORDER or self.state != CONNECTED):
            # Held (see _start_holding); inline, as most PUBLISHes of a publisher held behind a QoS 1
            # subscriber pass here: a PUBLISH counts its topic and payload, others 16 (_held_size).
            held.append(packet)
            self._held_bytes += len(packet.payload) + len(packet.topic) if ptype == _PUBLISH else 16  # type: ignore[union-attr]
            if self._held_bytes > HOLD_BYTES:
                self._stop_reading(_STOP_HOLD)
            return
        handler = self._handlers.get(ptype)
        if handler is None:
            self._illegal(ptype)
            return
        handler(self, packet)

    def _illegal(self, ptype: int) -> None:
        """A packet not legal in this state (``LEGAL``): ignored once CLOSED, else a protocol error."""
        if self.state == CLOSED:
            return
        if ptype == P.CONNECT:
            raise ProtocolError(R.PROTOCOL_ERROR, "a second CONNECT on one connection [MQTT-3.1.0-2]")
        name = P.PACKET_NAMES.get(ptype, str(ptype))
        where = "before CONNECT [MQTT-3.1.0-1]" if self.state == AWAIT_CONNECT else "from a client"
        raise ProtocolError(R.PROTOCOL_ERROR, f"{name} is not allowed {where}")

    # -- CONNECT ------------------------------------------------------------------------------------

    def _take_connect(self, p: P.Connect) -> None:
        """What the CONNECT says, kept first, so a refusal is answered (and reported) in the client's
        version and names."""
        self.level = p.proto_level
        self.v5 = p.proto_level == 5
        self.client_id = p.client_id
        self.username = p.username
        self.proto_name = p.proto_name
        self.clean_start = p.clean_start
        self.keepalive = p.keepalive
        self.connect_props = p.properties

    def _on_connect(self, p: P.Connect) -> None:
        self._take_connect(p)
        cert_user = self.link.cert_username
        if cert_user is not None:  # the certificate names the user (and was verified by the TLS handshake)
            self.username = cert_user
            self.username_from_cert = True
        broker = self.broker
        try:
            if broker.sockets > broker.max_connections:
                raise ConnectRefused(
                    R.QUOTA_EXCEEDED, f"the broker is at max_connections ({broker.max_connections} connections)"
                )
            terms = negotiate(p, self.config)
            self.client_id = terms.client_id
        except ConnectRefused as exc:
            self._refuse(exc.code, str(exc))
            return
        authn = broker.authenticator.authenticate(self, p.password, partial(self._authenticated, p, terms))
        if authn is None:  # decided later: what the client sends meanwhile is held (``handle``)
            self._held = []
            self._stop_reading(_STOP_AUTH)
            return
        self._authenticated(p, terms, authn)

    def _authenticated(self, p: P.Connect, terms: Any, authn: Authn) -> None:
        """The authenticator's decision on this CONNECT: refuse, or open the session and CONNACK."""
        if self.state != AWAIT_CONNECT:  # closed while the decision was being made
            return
        broker = self.broker
        hooks = broker.hooks
        fire_authn = hooks.client_check_authn_complete
        if fire_authn is not None:
            fire_authn(self, R.NAMES.get(authn.code, "unspecified_error"), authn.is_superuser, authn.is_anonymous)
        held, self._held = self._held, None
        self._held_bytes = 0
        if authn.code != R.SUCCESS:
            self._refuse(authn.code, "bad user name or password" if authn.code == R.BAD_USER_NAME_OR_PASSWORD
                         else "not authorized")  # fmt: skip
            return
        self.is_superuser = authn.is_superuser
        self.is_anonymous = authn.is_anonymous
        self.keepalive = terms.keepalive
        self.max_packet_out = terms.max_packet_out
        if self.v5:
            allowed = min(p.properties.get("Topic-Alias-Maximum", 0), self.config.outbound_topic_aliases)
            if allowed:
                self.aliases_out = OutboundAliases(allowed)
        self.receive_maximum = terms.receive_maximum
        self.connected_at = int(time.time() * 1000)
        if p.will is not None and self._authorize(PUBLISH, p.will.topic):  # a denied will is never published
            self.will = p.will
            self.will_delay = p.will.properties.get("Will-Delay-Interval", 0)
        try:
            session, present = broker.open_session(self, terms.client_id, p.clean_start, terms.expiry)
        except ProtocolError:  # refused there (max_sessions): answered and closed already; this may
            return  # run from the authenticator's callback, where nobody would catch it
        session.inflight_max = min(terms.receive_maximum, self.config.max_inflight)
        session.client_info = (self.username, self.peerhost, self.link.peername)
        self.session = session
        self.state = CONNECTED
        self._handlers = _STATE_HANDLERS[CONNECTED]
        broker.connections.add(self)
        self.stats.count_connect("success")
        fire = hooks.client_connected
        if fire is not None:
            fire(self)
        fire_ack = hooks.client_connack
        if fire_ack is not None:
            fire_ack(self, R.SUCCESS)
        self._send(P.Connack(present, R.SUCCESS, terms.ack_props))
        self._arm_keepalive()
        session.resume(self)
        if held is not None:  # what came while the authenticator decided, in order
            self._resume_reading(_STOP_AUTH | _STOP_HOLD)
            for packet in held:
                if self.state != CONNECTED:
                    return
                try:
                    self.handle(packet)
                except ProtocolError as exc:
                    self.protocol_error(exc)
                    return

    def refuse_connect(self, code: int, text: str, p: P.Connect | None = None) -> None:
        """Refuse a CONNECT decided elsewhere (the broker's ``max_sessions``): CONNACK ``code`` in
        the client's version, then close. ``p``: a CONNECT not handed to this connection yet, whose
        fields are taken first, as ``_on_connect`` takes them."""
        if p is not None:
            self._take_connect(p)
        self._refuse(code, text)

    def _refuse(self, code: int, text: str) -> None:
        """CONNACK with a failure ``code``, then close (no session, no will, no disconnect event;
        counted in ``connects`` by result, not as a close before CONNECT)."""
        self.stats.count_connect(R.NAMES.get(code, "unspecified_error"))
        fire = self.broker.hooks.client_connack
        if fire is not None:
            fire(self, code)
        self._send(P.Connack(False, code, {"Reason-String": text} if self.v5 else None))
        self.close_reason = R.NAMES.get(code, "protocol_error")
        self.state = CLOSED
        self._handlers = _STATE_HANDLERS[CLOSED]
        self._finish()

    # -- timers -----------------------------------------------------------------------------------

    def _connect_deadline(self) -> None:
        """``idle_timeout`` after accept: a connection that has not completed CONNECT is closed."""
        self._timer = None
        if self.state == AWAIT_CONNECT:
            self.close_reason = "connect_timeout"
            self._finish()

    def _arm_keepalive(self) -> None:
        """Keepalive 0 turns the check off (section 3.1.2.10)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.keepalive:
            self._timer = self.broker.clock.call_later(self.keepalive * 1.5, self._check_keepalive)

    def _check_keepalive(self) -> None:
        """Close after 1.5x the keepalive without a byte from the client [MQTT-3.1.2-22]. While we do
        not read the socket because we hold too much (backpressure) or it is over its messages_rate or
        bytes_rate, its packets wait there: that
        silence is ours, not its. Not reading because it does not read what we send is its own."""
        self._timer = None
        if self.state != CONNECTED:
            return
        interval = self.keepalive * 1.5
        clock = self.broker.clock
        idle = 0.0 if self._stopped & (_STOP_HOLD | _STOP_RATE) else clock.time() - self.link.last_rx
        if idle >= interval:
            self.protocol_error(
                ProtocolError(R.KEEP_ALIVE_TIMEOUT, f"no packet within 1.5 x keepalive {self.keepalive}s")
            )
        else:
            self._timer = clock.call_later(interval - idle, self._check_keepalive)

    # -- PUBLISH from the client (section 3.3) -------------------------------------------------------

    def _on_publish(self, p: P.Publish) -> None:
        qos = p.qos
        config = self.config
        if qos > config.max_qos:
            raise ProtocolError(R.QOS_NOT_SUPPORTED, f"PUBLISH QoS {qos} exceeds the server's Maximum QoS")
        if p.retain and not config.retain_available:
            raise ProtocolError(
                R.RETAIN_NOT_SUPPORTED, "retained messages are not supported (Retain Available is 0) [MQTT-3.3.1-8]"
            )
        topic = p.topic
        props = p.properties
        broker = self.broker
        if len(topic) >= broker.publish_checks_from:  # a name long enough to be over a topic limit, or rates
            self._publish_checks(topic, p.payload)
        expiry_at = None
        if props:
            aliases = self.aliases
            if aliases is None:
                aliases = self.aliases = InboundAliases(config.topic_alias_maximum, config.max_topic_alias_bytes.bytes)
            try:
                topic = aliases.resolve(topic, props)
            except AliasBytesExceeded:
                self.stats.limits["max_topic_alias_bytes"] += 1
                raise
            expiry = props.get("Message-Expiry-Interval")
            if expiry is not None:
                expiry_at = broker.clock.time() + expiry
            for key in HOP_BY_HOP:
                props.pop(key, None)
        stats = self.stats
        stats.messages_received[qos] += 1
        session = self.session
        assert session is not None
        pid: int = p.packet_id or 0
        msg = Message(
            topic,
            p.payload,
            qos,
            p.retain,
            props,
            self.client_id,
            expiry_at,
            self.username,
            self.peerhost,
            p.dup,
            self.link.peername,
        )
        if qos == 2:
            if pid in session.awaiting_rel:
                # A retransmission before PUBREL: acknowledge, never route twice [MQTT-4.3.3-10].
                broker.message_dropped(msg, "packet_identifier_inuse")
                self._send(P.Pubrec(pid))
                return
            if len(session.awaiting_rel) >= config.receive_maximum:
                broker.message_dropped(msg, "receive_maximum_exceeded")
                raise ProtocolError(
                    R.RECEIVE_MAXIMUM_EXCEEDED, "more unacknowledged QoS 2 PUBLISH than Receive Maximum"
                )
        if not self._authorize(PUBLISH, topic):
            if qos:  # v5 says why; 3.1.1 has no negative PUBACK, so the message is acked and dropped
                code = R.NOT_AUTHORIZED if self.v5 else R.SUCCESS
                self._send(P.Puback(pid, code) if qos == 1 else P.Pubrec(pid, code))
            return
        backpressure = broker.backpressure
        backpressure.fed = None
        n = broker.publish(msg)
        if qos == 1:
            if n == 0 and self.v5:
                self._send(P.Puback(pid, R.NO_MATCHING_SUBSCRIBERS))
            else:
                stats.packets_sent[_PUBACK] += 1
                self.link.write(encode_puback(pid))
        elif qos == 2:
            awaiting = session.awaiting_rel
            if not isinstance(awaiting, set):
                awaiting = session.awaiting_rel = set()  # the shared empty frozenset is never written
            awaiting.add(pid)
            if session.dirty is not None:
                session.dirty.add(session)
            self._send(P.Pubrec(pid, R.NO_MATCHING_SUBSCRIBERS if n == 0 and self.v5 else R.SUCCESS))
        if backpressure.fed is not None and self._held is None:
            self._start_holding(backpressure.fed)

    def _publish_checks(self, topic: str, payload: bytes) -> None:
        """The limits on a PUBLISH, called only where one may bite (``Broker.publish_checks_from``):
        ``max_topic_length`` and ``max_topic_levels`` (beyond, the connection closes; v5: DISCONNECT
        0x90), and with ``messages_rate`` or ``bytes_rate`` set, every PUBLISH's share of its window
        (two subtractions; the clock is read once a window is used up)."""
        broker = self.broker
        if len(topic) >= broker.topic_check_from:
            limit = topic_over_limits(topic, self.config)
            if limit is not None:
                self.stats.limits[limit] += 1
                raise ProtocolError(R.TOPIC_NAME_INVALID, f"PUBLISH topic name exceeds {limit}")
        if broker.rate_limited:
            self._msgs_left -= 1
            self._bytes_left -= len(topic) + len(payload)
            if self._msgs_left < 0 or self._bytes_left < 0:
                self._over_rate()

    def _over_rate(self) -> None:
        """This client used up its window's messages_rate or bytes_rate. A window over, the next one
        starts with the excess paid for; otherwise the link stops reading until this window ends (and
        for as many more windows as a message larger than a window's bytes needs). What was read
        is handled: nothing is dropped."""
        if self._rate_timer is not None:  # already stopped (packets held before were replayed)
            return
        broker = self.broker
        clock = broker.clock
        now = clock.time()
        if now >= self._window_end:
            self._new_window(now)
            if self._msgs_left >= 0 and self._bytes_left >= 0:
                return
        msgs_rate = broker.messages_rate
        bytes_rate = broker.bytes_rate
        limits = self.stats.limits
        extra = 0  # whole windows beyond this one that the overdraft needs
        if self._msgs_left < 0:
            limits["messages_rate"] += 1
            extra = (-self._msgs_left - 1) // msgs_rate
        if self._bytes_left < 0:
            limits["bytes_rate"] += 1
            extra = max(extra, (-self._bytes_left - 1) // bytes_rate)
        if extra:  # the windows skipped while stopped grant their allowance towards the overdraft
            self._window_end += extra
            if msgs_rate:
                self._msgs_left = min(self._msgs_left + extra * msgs_rate, 0)
            if bytes_rate:
                self._bytes_left = min(self._bytes_left + extra * bytes_rate, 0)
        broker.flow_gauges["rate_limit"] += 1
        self._stop_reading(_STOP_RATE)
        self._rate_timer = clock.call_later(self._window_end - now, self._rate_window)

    def _rate_window(self) -> None:
        """The window a rate-limited client waited for has come: it starts (when it was due), and
        the link reads on."""
        self._rate_timer = None
        self.broker.flow_gauges["rate_limit"] -= 1
        self._new_window(self._window_end)
        self._resume_reading(_STOP_RATE)

    def _new_window(self, start: float) -> None:
        """A rate window starts: one window's allowance, less what the last one overdrew."""
        broker = self.broker
        self._window_end = start + 1.0
        msgs_rate = broker.messages_rate
        bytes_rate = broker.bytes_rate
        self._msgs_left = msgs_rate + min(self._msgs_left, 0) if msgs_rate else _UNLIMITED
        self._bytes_left = bytes_rate + min(self._bytes_left, 0) if bytes_rate else _UNLIMITED

    # -- flow control ---------------------------------------------------------------------------

    def _start_holding(self, fed: list[object]) -> None:
        """This client's last PUBLISH fed holders (a webhook over its high water, a subscriber behind
        its window): hold what it sends next until they have caught up."""
        self._held = []
        self._held_bytes = 0
        self.broker.flow_gauges["backpressure"] += 1
        self.broker.backpressure.on_relief(self._relieved, fed)

    def _relieved(self) -> None:
        """The holders have caught up: replay what was held, from the loop's next turn."""
        if self._held is not None and self.state != CLOSED:
            self.link.defer(self._replay)

    def _replay(self) -> None:
        """Handle up to REPLAY_BATCH held packets, in order, then let the other relieved publishers
        have their turn (``defer``): a relieved subscriber's room is shared among its publishers,
        not taken by the first. A PUBLISH that feeds a holder again ends the replay: the rest stays
        held, as it is, until that holder catches up."""
        held = self._held
        if held is None or self.state == CLOSED:
            return
        self._held = None
        self.broker.flow_gauges["backpressure"] -= 1
        total = self._held_bytes
        n = len(held) if len(held) < REPLAY_BATCH else REPLAY_BATCH
        for i in range(n):
            try:
                self.handle(held[i])
            except ProtocolError as exc:
                self.protocol_error(exc)
                return
            except Exception as exc:
                self.internal_error(exc)
                return
            if self.state == CLOSED:
                return
            if self._held is not None:  # held again by that PUBLISH (_start_holding made a new, empty list)
                self._held_bytes = total - _held_size(held[: i + 1])
                del held[: i + 1]  # the rest, in place (no copy of it per replay)
                self._held = held
                break
        else:
            if len(held) > n:  # still relieved: the rest after the other publishers' turns
                self._held_bytes = total - _held_size(held[:n])
                del held[:n]
                self._held = held
                self.broker.flow_gauges["backpressure"] += 1
                self.link.defer(self._replay)
        if self._held is None or self._held_bytes <= HOLD_BYTES:
            self._resume_reading(_STOP_HOLD)

    def _stop_reading(self, why: int) -> None:
        if not self._stopped:
            self.link.pause_reading()
        self._stopped |= why

    def _resume_reading(self, why: int) -> None:
        if self._stopped & why:
            self._stopped &= ~why
            if not self._stopped and self.state != CLOSED:
                self.link.resume_reading()

    def _authorize(self, action: str, topic: str) -> bool:
        """Ask the authorizer, count and report the decision (client.check_authz_complete)."""
        broker = self.broker
        allowed, source = broker.authorizer.check(self, action, topic)
        self.stats.authz[action][1 if allowed else 0] += 1
        fire = broker.hooks.client_check_authz_complete
        if fire is not None:
            fire(self, topic, action, "allow" if allowed else "deny", source)
        return allowed

    # -- acknowledgements of our PUBLISHes, and PUBREL of the client's QoS 2 ------------------------

    def _on_puback(self, p: P.Puback) -> None:
        assert self.session is not None
        self._acked(self.session.on_puback(p.packet_id), p.properties)

    def _acked(self, entry: Outgoing | None, props: dict[str, Any]) -> None:
        """A QoS 1 or 2 flow to this client finished (PUBACK / PUBCOMP): message.acked."""
        fire = self.broker.hooks.message_acked
        if entry is not None and fire is not None:
            assert self.session is not None
            fire(entry.msg, self.session, entry.qos, props)

    def _on_pubrec(self, p: P.Pubrec) -> None:
        assert self.session is not None
        failed = p.reason_code >= R.FAILURE
        if self.session.on_pubrec(p.packet_id, failed):
            if not failed:
                self.send_pubrel(p.packet_id)
        else:
            self._send(P.Pubrel(p.packet_id, R.PACKET_IDENTIFIER_NOT_FOUND))

    def _on_pubrel(self, p: P.Pubrel) -> None:
        assert self.session is not None
        awaiting = self.session.awaiting_rel
        if p.packet_id in awaiting and isinstance(awaiting, set):
            awaiting.discard(p.packet_id)
            if self.session.dirty is not None:
                self.session.dirty.add(self.session)
            self._send(P.Pubcomp(p.packet_id))
        else:
            self._send(P.Pubcomp(p.packet_id, R.PACKET_IDENTIFIER_NOT_FOUND))

    def _on_pubcomp(self, p: P.Pubcomp) -> None:
        assert self.session is not None
        self._acked(self.session.on_pubcomp(p.packet_id), p.properties)

    # -- SUBSCRIBE and UNSUBSCRIBE (sections 3.8 to 3.11) ------------------------------------------

    def _check_filter(self, topic_filter: str) -> tuple[str | None, str, int]:
        """(share group, real filter, 0), or (.., .., the reason code refusing this filter)."""
        try:
            group, real = parse_shared(topic_filter)
            validate_topic_filter(real)
        except ProtocolError as exc:
            return None, topic_filter, exc.reason_code
        cfg = self.config
        if group is not None and not cfg.shared_subscription_available:
            return group, real, R.SHARED_SUBSCRIPTIONS_NOT_SUPPORTED
        if not cfg.wildcard_subscription_available and ("+" in real or "#" in real):
            return group, real, R.WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED
        return group, real, R.SUCCESS

    def _on_subscribe(self, p: P.Subscribe) -> None:
        session = self.session
        assert session is not None
        broker = self.broker
        sub_id = p.properties.get("Subscription-Identifier")
        codes: list[int] = []
        retained: list[tuple[str, int, int | None]] = []
        for sub in p.subscriptions:
            group, real, refused = self._check_filter(sub.topic_filter)
            if refused:
                codes.append(refused)
                continue
            if group is not None and sub.no_local:
                raise ProtocolError(R.PROTOCOL_ERROR, "No Local on a shared subscription [MQTT-3.8.3-4]")
            limit = topic_over_limits(sub.topic_filter, self.config, real)
            subs = session.subscriptions
            if limit is None and len(subs) >= self.config.max_subscriptions and sub.topic_filter not in subs:
                limit = "max_subscriptions"  # replacing a subscription is always allowed
            if limit is not None:
                self.stats.limits[limit] += 1
                codes.append(R.QUOTA_EXCEEDED if limit == "max_subscriptions" else R.TOPIC_FILTER_INVALID)
                continue
            if not self._authorize(SUBSCRIBE, sub.topic_filter):
                codes.append(R.NOT_AUTHORIZED)
                continue
            qos = min(sub.qos, self.config.max_qos)
            opts = SubOptions(sub.topic_filter, qos, sub.no_local, sub.retain_as_published, sub.retain_handling, sub_id)
            is_new = broker.subscribe(session, opts)
            codes.append(qos)  # the granted QoS is the success code (GRANTED_QOS_0..2)
            fire = broker.hooks.session_subscribed
            if fire is not None:
                fire(self, sub.topic_filter, qos, p.properties)
            # Retained messages: not for shared subscriptions; Retain Handling 1 = only when new [MQTT-3.3.1-9..11].
            if group is None and (sub.retain_handling == 0 or (sub.retain_handling == 1 and is_new)):
                retained.append((real, qos, sub_id))
        self._send(P.Suback(p.packet_id, codes))
        for real, qos, sid in retained:
            session.deliver_retained(broker.retained_for(real), qos, sid)

    def _on_unsubscribe(self, p: P.Unsubscribe) -> None:
        session = self.session
        assert session is not None
        broker = self.broker
        codes: list[int] = []
        for topic_filter in p.topic_filters:
            refused = self._check_filter(topic_filter)[2]
            if refused and refused not in _SETTINGS_REFUSALS:
                codes.append(refused)
                continue
            removed = broker.unsubscribe(session, topic_filter)
            if removed is None:
                codes.append(R.NO_SUBSCRIPTION_EXISTED)
                continue
            codes.append(R.SUCCESS)
            fire = broker.hooks.session_unsubscribed
            if fire is not None:
                fire(self, topic_filter, removed.qos, p.properties)
        self._send(P.Unsuback(p.packet_id, codes))

    # -- PINGREQ, DISCONNECT, AUTH ------------------------------------------------------------------

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
        raise ProtocolError(R.PROTOCOL_ERROR, "AUTH without an Authentication Method in CONNECT [MQTT-4.12.0-7]")

    # -- output -------------------------------------------------------------------------------------

    def _send(self, packet: P.Packet) -> None:
        data = encode(packet, self.level)
        if data:
            self.stats.packets_sent[packet.type] += 1
            self.link.write(data)

    def send_pubrel(self, pid: int) -> None:
        self._send(P.Pubrel(pid))

    def send_publish(self, msg: Message, qos: int, retain: bool, pid: int | None, sub_id: SubIds, dup: bool) -> bool:
        """Encode and write one PUBLISH; False if it cannot be sent (expired or over the client's limit).
        ``sub_id``: the Subscription Identifier of the matching subscription, or a tuple of them
        (one copy for several overlapping subscriptions), or None."""
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
            props["Subscription-Identifier"] = list(sub_id) if type(sub_id) is tuple else [sub_id]
        topic = msg.topic
        new_alias = 0
        aliases_out = self.aliases_out
        if aliases_out is not None:
            topic, props, new_alias = aliases_out.apply(topic, props)
        data = encode_publish(topic, msg.payload, qos, retain, dup, pid, props, self.level)
        if len(data) > self.max_packet_out:
            self.stats.deliveries_dropped["too_large"] += 1  # [MQTT-3.1.2-25]
            return False
        if new_alias and aliases_out is not None:  # the client learns it with this PUBLISH
            aliases_out.commit(msg.topic, new_alias)
        stats = self.stats
        stats.packets_sent[_PUBLISH] += 1
        stats.messages_sent[qos] += 1
        self.link.write(data)
        fire = self.broker.hooks.message_delivered
        if fire is not None and self.session is not None:
            fire(msg, self.session, qos, retain)
        return True

    def pause_writing(self) -> None:
        """The transport's write buffer passed its high-water mark: the session queues (bounded),
        and nothing more is read from this client until it reads what we sent."""
        if self.saturated or self.state == CLOSED:
            return
        self.saturated = True
        self.broker.flow_gauges["write_buffer_full"] += 1
        self._stop_reading(_STOP_WRITE)

    def resume_writing(self) -> None:
        """The write buffer drained: read on, and send what the session queued meanwhile."""
        if not self.saturated:
            return
        self.saturated = False
        self.broker.flow_gauges["write_buffer_full"] -= 1
        if self.state == CLOSED:
            return
        self._resume_reading(_STOP_WRITE)
        session = self.session
        if session is not None and session.conn is self:
            session.drain()

    # -- closing ------------------------------------------------------------------------------------

    def internal_error(self, exc: Exception) -> None:
        """A bug while handling a packet: it costs this connection (0x83 to a v5 client), never the broker.
        Called from an ``except`` clause: the traceback is logged."""
        log.exception("internal error on connection %s", self.link.peername)
        self.protocol_error(ProtocolError(R.IMPLEMENTATION_SPECIFIC_ERROR, f"internal error: {exc!r}"))

    def protocol_error(self, exc: ProtocolError) -> None:
        """Close this connection for a peer's violation; v5 says why in a DISCONNECT first."""
        if self.state == CLOSED:
            return
        if self.state == AWAIT_CONNECT and exc.reason_code == R.UNSUPPORTED_PROTOCOL_VERSION:
            # CONNACK 0x01 in 3.1.1's format, which every version's client reads [MQTT-3.1.2-2]
            self.level, self.v5 = 4, False
            self._refuse(R.UNSUPPORTED_PROTOCOL_VERSION, str(exc))
            return
        log.info("closing %s (%s): %s", self.client_id or self.link.peername, R.NAMES.get(exc.reason_code), exc)
        self.close_reason = _CLOSE_REASONS.get(exc.reason_code, "protocol_error")
        if self.state == CONNECTED and self.v5:
            self._send_disconnect(exc.reason_code, str(exc))
        self._finish()

    def taken_over(self, reason: str) -> None:
        """Another connection claims this client id [MQTT-3.1.4-3]."""
        if self.state != CONNECTED:
            return
        self.close_reason = reason
        if self.v5:
            self._send_disconnect(R.SESSION_TAKEN_OVER, "another connection took over this session")
        self._finish()

    def kick(self) -> None:
        """An administrator ends this connection: v5 clients get DISCONNECT 0x98 first."""
        if self.state != CONNECTED:
            self._finish()
            return
        self.close_reason = "kicked"
        if self.v5:
            self._send_disconnect(R.ADMINISTRATIVE_ACTION, "kicked by an administrator")
        self._finish()

    def shut_down(self) -> None:
        """The server is stopping: v5 clients get DISCONNECT 0x8B first."""
        if self.state != CONNECTED:
            self._finish()
            return
        self.close_reason = "server_shutting_down"
        if self.v5:
            self._send_disconnect(R.SERVER_SHUTTING_DOWN, "server shutting down")
        self._finish()

    def _send_disconnect(self, code: int, text: str) -> None:
        self._send(P.Disconnect(code, {"Reason-String": text[:256]}))

    def connection_lost(self) -> None:
        """The transport is gone (the peer closed, or we did): called once per connection."""
        self.broker.sockets -= 1
        if self.state != CLOSED:
            self._finish()

    def _finish(self) -> None:
        """Leave for CLOSED exactly once: publish or schedule the will, detach the session, close."""
        was = self.state
        self.state = CLOSED
        self._handlers = _STATE_HANDLERS[CLOSED]
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        broker = self.broker
        broker.connections.discard(self)
        if self._held is not None:  # what the client sent after a held PUBLISH is not handled
            self._held = None
            if not self._stopped & _STOP_AUTH:  # held by backpressure, not while authenticating
                broker.flow_gauges["backpressure"] -= 1
        if self.saturated:
            self.saturated = False
            broker.flow_gauges["write_buffer_full"] -= 1
        if self._rate_timer is not None:
            self._rate_timer.cancel()
            self._rate_timer = None
            broker.flow_gauges["rate_limit"] -= 1
        if was == AWAIT_CONNECT:
            self.stats.count_closed_before_connect(self.close_reason)
        session = self.session
        if was == CONNECTED and session is not None:
            if self.will is not None:
                delay = min(self.will_delay, session.expiry_interval)
                broker.schedule_will(session, self.will, delay)
                self.will = None
            self.stats.count_disconnect(self.close_reason)
            fire = broker.hooks.client_disconnected
            if fire is not None:
                fire(self, self.close_reason, self.disconnect_props)
            broker.detach(session, self)
        self.link.close()


_HANDLERS: dict[int, Callable[[Connection, Any], None]] = {
    P.CONNECT: Connection._on_connect,
    P.PUBLISH: Connection._on_publish,
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
# One table per state, of the packets legal in it (LEGAL): Connection.handle makes one lookup per packet.
_STATE_HANDLERS: dict[int, dict[int, Callable[[Connection, Any], None]]] = {
    state: {ptype: _HANDLERS[ptype] for ptype in legal} for state, legal in LEGAL.items()
}
