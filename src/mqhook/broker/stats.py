"""Plain integer counters bumped on hot paths: no locks, no objects per event.

The admin API and the Prometheus collector (``mqhook.metrics``) read them at request time.
Reason names follow EMQX's event vocabulary so a counter and a webhook body agree.
"""

from __future__ import annotations

from typing import Any

from mqhook.broker.auth import PUBLISH, SUBSCRIBE
from mqhook.mqtt.packets import PACKET_NAMES

# message.dropped reasons: the message reached no one or was refused on arrival.
MESSAGE_DROP_REASONS = ("no_subscribers", "receive_maximum_exceeded", "packet_identifier_inuse", "expired")
# delivery.dropped reasons: one subscriber did not get its copy.
DELIVERY_DROP_REASONS = ("queue_full", "qos0_msg", "no_local", "expired", "too_large")
# client.check_authz_complete actions.
AUTHZ_ACTIONS = (PUBLISH, SUBSCRIBE)
# client.disconnected reasons, EMQX names.
DISCONNECT_REASONS = (
    "normal",
    "tcp_closed",
    "keepalive_timeout",
    "takenover",
    "discarded",
    "kicked",
    "protocol_error",
    "malformed_packet",
    "packet_too_large",
    "topic_name_invalid",
    "topic_alias_invalid",
    "receive_maximum_exceeded",
    "server_shutting_down",
    "not_authorized",
)

# Connections closed before a CONNECT was accepted (a refused CONNECT is counted in ``connects``).
PRE_CONNECT_CLOSE_REASONS = (
    "connect_timeout",
    "tcp_closed",
    "packet_too_large",
    "malformed_packet",
    "protocol_error",
    "connection_rate_exceeded",
)

# Limits (README "Limits"), named after their settings, each counted in ``Stats.limits`` when it bites:
LIMITS = (
    "max_conn_rate_per_address",  # a new connection closed at once: its address connects too often
    "messages_rate",  # a client's reading paused: too many PUBLISHes this second
    "bytes_rate",  # a client's reading paused: too many PUBLISH bytes this second
    "max_subscriptions",  # a new subscription refused (SUBACK 0x97 / 0x80)
    "max_topic_levels",  # a topic name (connection closed) or filter (SUBACK 0x8F / 0x80) refused
    "max_topic_length",  # same, for its length
    "max_topic_alias_bytes",  # a connection closed: its inbound topic aliases hold too much (0x94)
    "max_retained_messages",  # a retained message not retained (still routed): too many retained
    "max_retained_bytes",  # same: retained messages hold too many bytes
    "max_sessions",  # a CONNECT refused (CONNACK 0x97 / 3): too many sessions
    "login_failures_per_address",  # a CONNECT refused unchecked: 5 failed logins from its address this minute
)

# mqtt.durable_sessions: counters of the session store (zero when it is off).
DURABLE_COUNTERS = (
    "flushes",  # batches written
    "changes_flushed",  # change records in them (see broker.journal)
    "flush_errors",  # batches that failed to write (everything is written again next time)
    "restored_sessions",  # sessions read back at start-up
    "restored_retained",  # retained messages read back at start-up
    "expired_at_restore",  # sessions whose expiry passed while the broker was down
)


class Stats:
    """Every counter of one broker. Attribute reads and ``+= 1`` only; see ``snapshot``."""

    def __init__(self) -> None:
        self.bytes_received = 0
        self.bytes_sent = 0
        self.packets_received = [0] * 16  # indexed by packet type
        self.packets_sent = [0] * 16
        self.messages_received = [0, 0, 0]  # indexed by QoS
        self.messages_sent = [0, 0, 0]
        self.messages_dropped = dict.fromkeys(MESSAGE_DROP_REASONS, 0)
        self.deliveries_dropped = dict.fromkeys(DELIVERY_DROP_REASONS, 0)
        self.connects: dict[str, int] = {"success": 0}
        self.disconnects = dict.fromkeys(DISCONNECT_REASONS, 0)
        self.closed_before_connect = dict.fromkeys(PRE_CONNECT_CLOSE_REASONS, 0)
        self.flow_control_timeouts = 0  # a subscriber held its publishers for flow_control_timeout
        # Authorization decisions by action; each list is [deny, allow] (index = allowed).
        self.authz: dict[str, list[int]] = {action: [0, 0] for action in AUTHZ_ACTIONS}
        self.limits = dict.fromkeys(LIMITS, 0)  # times each limit bit (see LIMITS)
        # mqtt.durable_sessions (mqhook.persist): batches written to data_dir/sessions.db, the change
        # records they held, writes that failed, and what the last start-up restored.
        self.durable = dict.fromkeys(DURABLE_COUNTERS, 0)

    def count_disconnect(self, reason: str) -> None:
        self.disconnects[reason] = self.disconnects.get(reason, 0) + 1

    def count_closed_before_connect(self, reason: str) -> None:
        self.closed_before_connect[reason] = self.closed_before_connect.get(reason, 0) + 1

    def count_connect(self, result: str) -> None:
        self.connects[result] = self.connects.get(result, 0) + 1

    def snapshot(self) -> dict[str, Any]:
        """A JSON-ready copy of the counters (gauges are added by the broker)."""
        return {
            "bytes_received": self.bytes_received,
            "bytes_sent": self.bytes_sent,
            "packets_received": {name: self.packets_received[t] for t, name in PACKET_NAMES.items()},
            "packets_sent": {name: self.packets_sent[t] for t, name in PACKET_NAMES.items()},
            "messages_received": {str(q): n for q, n in enumerate(self.messages_received)},
            "messages_sent": {str(q): n for q, n in enumerate(self.messages_sent)},
            "messages_dropped": dict(self.messages_dropped),
            "deliveries_dropped": dict(self.deliveries_dropped),
            "connects": dict(self.connects),
            "disconnects": dict(self.disconnects),
            "closed_before_connect": dict(self.closed_before_connect),
            "flow_control_timeouts": self.flow_control_timeouts,
            "authorization": {a: {"allow": n[1], "deny": n[0]} for a, n in self.authz.items()},
            "limits": dict(self.limits),
            "durable_sessions": dict(self.durable),
        }
