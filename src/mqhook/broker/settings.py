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
