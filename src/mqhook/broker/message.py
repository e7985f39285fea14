"""The broker's own view of an application message, shared by every copy delivered."""

from __future__ import annotations

import time
from typing import Any

# Properties a client sets on PUBLISH that are hop-by-hop: never forwarded [MQTT-3.3.2-...].
HOP_BY_HOP = ("Topic-Alias", "Subscription-Identifier")


class Message:
    """One published message. Immutable once routed; one instance serves all subscribers."""

    __slots__ = ("expiry_at", "payload", "properties", "qos", "received_at", "retain", "sender", "topic")

    def __init__(
        self,
        topic: str,
        payload: bytes,
        qos: int,
        retain: bool,
        properties: dict[str, Any],
        sender: str | None,
        expiry_at: float | None = None,
    ) -> None:
        self.topic = topic
        self.payload = payload
        self.qos = qos
        self.retain = retain
        self.properties = properties  # forwarded v5 properties, hop-by-hop ones removed
        self.sender = sender  # client id of the publisher (or of the will's owner)
        self.expiry_at = expiry_at  # loop-clock deadline from Message-Expiry-Interval, or None
        self.received_at = time.time()


class SubOptions:
    """One subscription of one session: MQTT 5 subscription options plus the identifier."""

    __slots__ = ("no_local", "qos", "rap", "retain_handling", "sub_id", "topic_filter")

    def __init__(
        self,
        topic_filter: str,
        qos: int,
        no_local: bool = False,
        rap: bool = False,
        retain_handling: int = 0,
        sub_id: int | None = None,
    ) -> None:
        self.topic_filter = topic_filter
        self.qos = qos
        self.no_local = no_local
        self.rap = rap
        self.retain_handling = retain_handling
        self.sub_id = sub_id
