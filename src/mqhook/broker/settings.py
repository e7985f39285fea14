"""The broker's settings: the ``[mqtt]`` section of the config file (``mqhook.config`` loads it).

The listener (``mqhook.server``) reads the transport settings of the same section (``bind``,
``idle_timeout``, ``write_buffer_high``). Bounds are msgspec constraints, checked however the
section is decoded; ``mqhook.schema.explain`` words a violation as
``$.mqtt.max_qos: 3 is invalid; expected an integer from 0 to 2``.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from mqhook.schema import ByteSize


class MessageBytes(ByteSize, le="1GB"):
    """``bytes_rate``: bytes per second, 0 = no limit."""

    __slots__ = ()


class AliasBytes(ByteSize, ge=1024, le="1GB"):
    __slots__ = ()


class RetainedBytes(ByteSize, ge=1024):
    __slots__ = ()


class MqttConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    bind: str = "127.0.0.1:1883"
    max_packet_size: Annotated[int, Meta(ge=16, le=268435455)] = 1048576
    # The largest CONNECT accepted (at most max_packet_size): before CONNECT completes a peer may make
    # the broker hold no more than this.
    max_connect_size: Annotated[int, Meta(ge=64, le=268435455)] = 65536
    receive_maximum: Annotated[int, Meta(ge=1, le=65535)] = 32
    max_inflight: Annotated[int, Meta(ge=1, le=65535)] = 32
    max_queued_messages: Annotated[int, Meta(ge=0, le=10_000_000)] = 1000
    max_session_expiry_interval: Annotated[int, Meta(ge=0, le=0xFFFFFFFF)] = 86400
    max_keepalive: Annotated[int, Meta(ge=1, le=65535)] = 65535
    # v5: the keepalive the broker imposes (CONNACK Server-Keep-Alive), whatever the client asked,
    # 0 included. 0: the client's keepalive, cut at max_keepalive.
    server_keepalive: Annotated[int, Meta(ge=0, le=65535)] = 0
    # Seconds a new connection may stay silent before its CONNECT (EMQX: mqtt.idle_timeout).
    idle_timeout: Annotated[float, Meta(ge=0.1, le=3600)] = 15.0
    topic_alias_maximum: Annotated[int, Meta(ge=0, le=65535)] = 65535
    # v5: topic aliases the broker uses on PUBLISHes to a client that allows them (the least of this and
    # the client's Topic-Alias-Maximum); a topic's later copies carry only its alias. 0: none.
    outbound_topic_aliases: Annotated[int, Meta(ge=0, le=65535)] = 64
    # v5: a message matching several subscriptions of one client (with Subscription Identifiers) goes as
    # one copy per subscription ("copy_each"), or as one copy carrying every identifier ("single_copy",
    # at the highest QoS granted); both are what the spec allows [MQTT-3.3.4-4, MQTT-3.3.4-5].
    overlapping_subscriptions: Literal["copy_each", "single_copy"] = "copy_each"
    retain_available: bool = True
    shared_subscription_available: bool = True
    wildcard_subscription_available: bool = True
    max_qos: Annotated[int, Meta(ge=0, le=2)] = 2
    max_clientid_len: Annotated[int, Meta(ge=23, le=65535)] = 65535
    # MQTT sockets open at once, connected or not; a CONNECT beyond is refused (CONNACK 0x97 in v5,
    # 3 in 3.1.1). 0: the process's file descriptor limit (raised to its hard limit at start) minus a
    # reserve for the admin server, webhooks and files, so the limit is never reached silently.
    max_connections: Annotated[int, Meta(ge=0, le=100_000_000)] = 0
    # Seconds a QoS 1/2 subscriber with a window's worth of messages queued may make its publishers
    # wait while it catches up; still behind after that, it is left to its queue. 0: never wait.
    flow_control_timeout: Annotated[float, Meta(ge=0, le=3600)] = 1.0
    # Transport write buffer high-water mark: above it a subscriber counts as saturated.
    write_buffer_high: Annotated[int, Meta(ge=1024, le=1 << 30)] = 262144

    # -- limits (README "Limits"); each counted in Stats.limits when it bites --------------------------
    # New connections per second from one source address (IP), every listener together; beyond, the
    # socket is closed at once, before its CONNECT (closed_before_connect "connection_rate_exceeded").
    # A burst of one second's worth is allowed. 0: no limit (addresses behind NAT or a proxy are shared).
    max_conn_rate_per_address: Annotated[int, Meta(ge=0, le=10_000_000)] = 0
    # PUBLISH messages, and bytes of their topics and payloads, per second per client, over one-second
    # windows; beyond, the broker stops reading that client until its next window (nothing dropped).
    # 0: no limit.
    messages_rate: Annotated[int, Meta(ge=0, le=100_000_000)] = 0
    bytes_rate: MessageBytes = MessageBytes(0)
    # Subscriptions one session may hold; a new filter beyond gets SUBACK 0x97 (3.1.1: 0x80).
    max_subscriptions: Annotated[int, Meta(ge=1, le=100_000_000)] = 10_000
    # Topic names (PUBLISH) and filters (SUBSCRIBE): at most this many levels and UTF-8 bytes. Beyond,
    # a PUBLISH closes the connection (v5: DISCONNECT 0x90), a filter gets SUBACK 0x8F (3.1.1: 0x80).
    max_topic_levels: Annotated[int, Meta(ge=1, le=65535)] = 128
    max_topic_length: Annotated[int, Meta(ge=1, le=65535)] = 4096
    # v5: the topic names one connection's inbound topic aliases may hold, in characters; a PUBLISH that
    # sets an alias beyond closes it with DISCONNECT 0x94 (Topic Alias invalid).
    max_topic_alias_bytes: AliasBytes = AliasBytes("1MB")
    # Retained messages, and bytes of their topics and payloads; beyond, a retained PUBLISH to a topic
    # with none retained yet (or one that would grow the bytes past the bound) is not retained, and is
    # still routed.
    max_retained_messages: Annotated[int, Meta(ge=0, le=1_000_000_000)] = 1_000_000
    max_retained_bytes: RetainedBytes = RetainedBytes("1GB")
    # Sessions, connected or kept for their expiry interval; a CONNECT that would make one more gets
    # CONNACK 0x97 (3.1.1: 3).
    max_sessions: Annotated[int, Meta(ge=1, le=1_000_000_000)] = 1_000_000
    # Retained messages and persistent sessions (a Session Expiry Interval above 0: subscriptions,
    # queued and in-flight messages, QoS 2 packet ids awaiting PUBREL, a delayed will) are kept in
    # data_dir/sessions.db and restored at start-up. Written in batches off the event loop (every
    # 50 ms and at shutdown): a crash loses at most the last batch's changes, a clean stop none.
    durable_sessions: bool = False
