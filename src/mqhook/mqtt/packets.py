"""MQTT control packets as plain slotted classes: the currency between codec and broker.

Properties are dicts keyed by the property's EMQX-style name (``"User-Property"``,
``"Message-Expiry-Interval"``...; see ``mqtt.properties.NAMES``). ``User-Property``
holds a list of ``(key, value)`` pairs in wire order; ``Subscription-Identifier``
in a PUBLISH holds a list of ints (it may repeat), in a SUBSCRIBE a single int.
An absent property block is an empty dict. 3.1.1 packets always have ``{}``.
"""

from __future__ import annotations

from typing import Any

CONNECT = 1
CONNACK = 2
PUBLISH = 3
PUBACK = 4
PUBREC = 5
PUBREL = 6
PUBCOMP = 7
SUBSCRIBE = 8
SUBACK = 9
UNSUBSCRIBE = 10
UNSUBACK = 11
PINGREQ = 12
PINGRESP = 13
DISCONNECT = 14
AUTH = 15

PACKET_NAMES = {
    CONNECT: "CONNECT",
    CONNACK: "CONNACK",
    PUBLISH: "PUBLISH",
    PUBACK: "PUBACK",
    PUBREC: "PUBREC",
    PUBREL: "PUBREL",
    PUBCOMP: "PUBCOMP",
    SUBSCRIBE: "SUBSCRIBE",
    SUBACK: "SUBACK",
    UNSUBSCRIBE: "UNSUBSCRIBE",
    UNSUBACK: "UNSUBACK",
    PINGREQ: "PINGREQ",
    PINGRESP: "PINGRESP",
    DISCONNECT: "DISCONNECT",
    AUTH: "AUTH",
}

Props = dict[str, Any]


class Will:
    __slots__ = ("payload", "properties", "qos", "retain", "topic")

    def __init__(
        self, topic: str, payload: bytes, qos: int = 0, retain: bool = False, properties: Props | None = None
    ) -> None:
        self.topic = topic
        self.payload = payload
        self.qos = qos
        self.retain = retain
        self.properties: Props = properties if properties is not None else {}


class Connect:
    type = CONNECT
    __slots__ = (
        "clean_start",
        "client_id",
        "keepalive",
        "password",
        "properties",
        "proto_level",
        "proto_name",
        "username",
        "will",
    )

    def __init__(
        self,
        client_id: str,
        proto_level: int = 4,
        proto_name: str = "MQTT",
        clean_start: bool = True,
        keepalive: int = 60,
        will: Will | None = None,
        username: str | None = None,
        password: bytes | None = None,
        properties: Props | None = None,
    ) -> None:
        self.proto_name = proto_name
        self.proto_level = proto_level  # 3 = MQTT 3.1 ("MQIsdp"), 4 = 3.1.1, 5 = 5.0
        self.clean_start = clean_start
        self.keepalive = keepalive
        self.client_id = client_id
        self.will = will
        self.username = username
        self.password = password
        self.properties: Props = properties if properties is not None else {}


class Connack:
    type = CONNACK
    __slots__ = ("properties", "reason_code", "session_present")

    def __init__(self, session_present: bool = False, reason_code: int = 0, properties: Props | None = None) -> None:
        self.session_present = session_present
        self.reason_code = reason_code  # v5 reason code; the encoder maps it for 3.1.1
        self.properties: Props = properties if properties is not None else {}


class Publish:
    type = PUBLISH
    __slots__ = ("dup", "packet_id", "payload", "properties", "qos", "retain", "topic")

    def __init__(
        self,
        topic: str,
        payload: bytes = b"",
        qos: int = 0,
        retain: bool = False,
        dup: bool = False,
        packet_id: int | None = None,
        properties: Props | None = None,
    ) -> None:
        self.topic = topic  # may be "" in v5 when a Topic-Alias property names it
        self.payload = payload
        self.qos = qos
        self.retain = retain
        self.dup = dup
        self.packet_id = packet_id
        self.properties: Props = properties if properties is not None else {}


_NO_ACK_PROPS: Props = {}


class _Ack:
    """PUBACK, PUBREC, PUBREL, PUBCOMP: a packet id, a reason code, properties."""

    type = 0
    __slots__ = ("packet_id", "properties", "reason_code")

    def __init__(self, packet_id: int, reason_code: int = 0, properties: Props | None = None) -> None:
        self.packet_id = packet_id
        self.reason_code = reason_code
        # Most acks have no properties: they share one empty dict, which nobody writes.
        self.properties: Props = properties if properties is not None else _NO_ACK_PROPS


class Puback(_Ack):
    type = PUBACK
    __slots__ = ()


class Pubrec(_Ack):
    type = PUBREC
    __slots__ = ()


class Pubrel(_Ack):
    type = PUBREL
    __slots__ = ()


class Pubcomp(_Ack):
    type = PUBCOMP
    __slots__ = ()


class Subscription:
    __slots__ = ("no_local", "qos", "retain_as_published", "retain_handling", "topic_filter")

    def __init__(
        self,
        topic_filter: str,
        qos: int = 0,
        no_local: bool = False,
        retain_as_published: bool = False,
        retain_handling: int = 0,
    ) -> None:
        self.topic_filter = topic_filter
        self.qos = qos
        self.no_local = no_local
        self.retain_as_published = retain_as_published
        self.retain_handling = retain_handling


class Subscribe:
    type = SUBSCRIBE
    __slots__ = ("packet_id", "properties", "subscriptions")

    def __init__(self, packet_id: int, subscriptions: list[Subscription], properties: Props | None = None) -> None:
        self.packet_id = packet_id
        self.subscriptions = subscriptions
        self.properties: Props = properties if properties is not None else {}


class Suback:
    type = SUBACK
    __slots__ = ("packet_id", "properties", "reason_codes")

    def __init__(self, packet_id: int, reason_codes: list[int], properties: Props | None = None) -> None:
        self.packet_id = packet_id
        self.reason_codes = reason_codes  # v5 codes; 3.1.1 encodes failures (>= 0x80) as 0x80
        self.properties: Props = properties if properties is not None else {}


class Unsubscribe:
    type = UNSUBSCRIBE
    __slots__ = ("packet_id", "properties", "topic_filters")

    def __init__(self, packet_id: int, topic_filters: list[str], properties: Props | None = None) -> None:
        self.packet_id = packet_id
        self.topic_filters = topic_filters
        self.properties: Props = properties if properties is not None else {}


class Unsuback:
    type = UNSUBACK
    __slots__ = ("packet_id", "properties", "reason_codes")

    def __init__(self, packet_id: int, reason_codes: list[int] | None = None, properties: Props | None = None) -> None:
        self.packet_id = packet_id
        self.reason_codes = reason_codes if reason_codes is not None else []  # not on the wire in 3.1.1
        self.properties: Props = properties if properties is not None else {}


class Pingreq:
    type = PINGREQ
    __slots__ = ()


class Pingresp:
    type = PINGRESP
    __slots__ = ()


class Disconnect:
    type = DISCONNECT
    __slots__ = ("properties", "reason_code")

    def __init__(self, reason_code: int = 0, properties: Props | None = None) -> None:
        self.reason_code = reason_code
        self.properties: Props = properties if properties is not None else {}


class Auth:
    type = AUTH
    __slots__ = ("properties", "reason_code")

    def __init__(self, reason_code: int = 0, properties: Props | None = None) -> None:
        self.reason_code = reason_code
        self.properties: Props = properties if properties is not None else {}


Packet = (
    Connect
    | Connack
    | Publish
    | Puback
    | Pubrec
    | Pubrel
    | Pubcomp
    | Subscribe
    | Suback
    | Unsubscribe
    | Unsuback
    | Pingreq
    | Pingresp
    | Disconnect
    | Auth
)
