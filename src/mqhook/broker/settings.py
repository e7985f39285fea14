"""The broker's settings: the ``[mqtt]`` section of the config file (``mqhook.config`` loads it).

The listener (``mqhook.server``) reads the transport settings of the same section (``bind``,
``idle_timeout``, ``write_buffer_high``).
"""

from __future__ import annotations

import msgspec


class MqttConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    bind: str = "127.0.0.1:1883"
    max_packet_size: int = 1048576
    receive_maximum: int = 32
    max_inflight: int = 32
    max_queued_messages: int = 1000
    max_session_expiry_interval: int = 86400
    max_keepalive: int = 65535
    # Seconds a new connection may stay silent before its CONNECT (EMQX: mqtt.idle_timeout).
    idle_timeout: float = 15.0
    topic_alias_maximum: int = 65535
    retain_available: bool = True
    shared_subscription_available: bool = True
    wildcard_subscription_available: bool = True
    max_qos: int = 2
    max_clientid_len: int = 65535
    # Transport write buffer high-water mark: above it a subscriber counts as saturated.
    write_buffer_high: int = 262144
