"""MQTT 5 reason codes (spec section 2.4) and their names.

Names are the snake_case forms EMQX uses in its events (``success``,
``not_authorized``...), so one table serves the wire and the webhook bodies.
"""

from __future__ import annotations

SUCCESS = 0x00
NORMAL_DISCONNECTION = 0x00
GRANTED_QOS_0 = 0x00
GRANTED_QOS_1 = 0x01
GRANTED_QOS_2 = 0x02
DISCONNECT_WITH_WILL = 0x04
NO_MATCHING_SUBSCRIBERS = 0x10
NO_SUBSCRIPTION_EXISTED = 0x11
CONTINUE_AUTHENTICATION = 0x18
REAUTHENTICATE = 0x19
UNSPECIFIED_ERROR = 0x80
FAILURE = 0x80  # codes from here up report a failure (section 2.4)
V3_SUBACK_FAILURE = 0x80  # 3.1.1 has one SUBACK failure code [MQTT-3.9.3-2]
MALFORMED_PACKET = 0x81
PROTOCOL_ERROR = 0x82
IMPLEMENTATION_SPECIFIC_ERROR = 0x83
UNSUPPORTED_PROTOCOL_VERSION = 0x84
CLIENT_IDENTIFIER_NOT_VALID = 0x85
BAD_USER_NAME_OR_PASSWORD = 0x86
NOT_AUTHORIZED = 0x87
SERVER_UNAVAILABLE = 0x88
SERVER_BUSY = 0x89
BANNED = 0x8A
SERVER_SHUTTING_DOWN = 0x8B
BAD_AUTHENTICATION_METHOD = 0x8C
KEEP_ALIVE_TIMEOUT = 0x8D
SESSION_TAKEN_OVER = 0x8E
TOPIC_FILTER_INVALID = 0x8F
TOPIC_NAME_INVALID = 0x90
PACKET_IDENTIFIER_IN_USE = 0x91
PACKET_IDENTIFIER_NOT_FOUND = 0x92
RECEIVE_MAXIMUM_EXCEEDED = 0x93
TOPIC_ALIAS_INVALID = 0x94
PACKET_TOO_LARGE = 0x95
MESSAGE_RATE_TOO_HIGH = 0x96
QUOTA_EXCEEDED = 0x97
ADMINISTRATIVE_ACTION = 0x98
PAYLOAD_FORMAT_INVALID = 0x99
RETAIN_NOT_SUPPORTED = 0x9A
QOS_NOT_SUPPORTED = 0x9B
USE_ANOTHER_SERVER = 0x9C
SERVER_MOVED = 0x9D
SHARED_SUBSCRIPTIONS_NOT_SUPPORTED = 0x9E
CONNECTION_RATE_EXCEEDED = 0x9F
MAXIMUM_CONNECT_TIME = 0xA0
SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED = 0xA1
WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED = 0xA2

# Names for CONNACK / DISCONNECT codes as EMQX prints them in events.
NAMES: dict[int, str] = {
    0x00: "success",
    0x04: "disconnect_with_will_message",
    0x10: "no_matching_subscribers",
    0x11: "no_subscription_existed",
    0x18: "continue_authentication",
    0x19: "reauthenticate",
    0x80: "unspecified_error",
    0x81: "malformed_packet",
    0x82: "protocol_error",
    0x83: "implementation_specific_error",
    0x84: "unsupported_protocol_version",
    0x85: "client_identifier_not_valid",
    0x86: "bad_username_or_password",
    0x87: "not_authorized",
    0x88: "server_unavailable",
    0x89: "server_busy",
    0x8A: "banned",
    0x8B: "server_shutting_down",
    0x8C: "bad_authentication_method",
    0x8D: "keepalive_timeout",
    0x8E: "session_taken_over",
    0x8F: "topic_filter_invalid",
    0x90: "topic_name_invalid",
    0x91: "packet_identifier_inuse",
    0x92: "packet_identifier_not_found",
    0x93: "receive_maximum_exceeded",
    0x94: "topic_alias_invalid",
    0x95: "packet_too_large",
    0x96: "message_rate_too_high",
    0x97: "quota_exceeded",
    0x98: "administrative_action",
    0x99: "payload_format_invalid",
    0x9A: "retain_not_supported",
    0x9B: "qos_not_supported",
    0x9C: "use_another_server",
    0x9D: "server_moved",
    0x9E: "shared_subscriptions_not_supported",
    0x9F: "connection_rate_exceeded",
    0xA0: "maximum_connect_time",
    0xA1: "subscription_identifiers_not_supported",
    0xA2: "wildcard_subscriptions_not_supported",
}

# MQTT 3.1.1 CONNACK return codes (section 3.2.2.3), by the v5 reason code that means the same.
V3_CONNACK: dict[int, int] = {
    SUCCESS: 0x00,  # connection accepted
    UNSUPPORTED_PROTOCOL_VERSION: 0x01,  # unacceptable protocol version
    CLIENT_IDENTIFIER_NOT_VALID: 0x02,  # identifier rejected
    SERVER_UNAVAILABLE: 0x03,  # server unavailable
    BAD_USER_NAME_OR_PASSWORD: 0x04,  # bad user name or password
    NOT_AUTHORIZED: 0x05,  # not authorized
}
V3_CONNACK_FALLBACK = 0x03  # every other refusal: server unavailable
# A 3.1.1 CONNACK return code -> the v5 reason code (a client-side decoder reads 3.1.1 CONNACKs).
V5_FROM_V3_CONNACK: dict[int, int] = {v3: v5 for v5, v3 in V3_CONNACK.items()}


def v3_connack_code(code: int) -> int:
    """The 3.1.1 CONNACK return code for a v5 reason code (unknown failures -> server unavailable)."""
    return V3_CONNACK.get(code, V3_CONNACK_FALLBACK)
