"""The broker's own view of an application message, shared by every copy delivered."""

from __future__ import annotations

import os
import time
from typing import Any

from mqhook.native import load

# Properties a client sets on PUBLISH that are hop-by-hop: never forwarded (sections 3.3.2.3.4 and 3.3.4).
HOP_BY_HOP = ("Topic-Alias", "Subscription-Identifier")


# Message ids as EMQX makes them (emqx_guid): 64-bit microsecond timestamp, 48 bits naming this
# node and process, a 16-bit sequence; printed as 32 uppercase hex digits (ext/msgid.pyx, or its
# reference mqhook._msgid_py).
_ids, IMPLEMENTATION = load("mqhook._msgid", "mqhook._msgid_py")
NODE_BITS = ((hash((os.uname().nodename, os.getpid())) & 0xFFFFFFFF) << 16 | (os.getpid() & 0xFFFF)) << 16
_ids.set_node_bits(NODE_BITS)
new_message_id = _ids.new_message_id


class Message:
    """One published message. Immutable once routed; one instance serves all subscribers."""

    __slots__ = (
        "_id",
        "dup",
        "expiry_at",
        "payload",
        "peerhost",
        "peername",
        "properties",
        "qos",
        "received_at",
        "retain",
        "sender",
        "topic",
        "username",
    )

    def __init__(
        self,
        topic: str,
        payload: bytes,
        qos: int,
        retain: bool,
        properties: dict[str, Any],
        sender: str,
        expiry_at: float | None = None,
        username: str | None = None,
        peerhost: str = "undefined",
        dup: bool = False,
        peername: str = "undefined",
    ) -> None:
        self.topic = topic
        self.payload = payload
        self.qos = qos
        self.retain = retain
        self.properties = properties  # forwarded v5 properties, hop-by-hop ones removed
        self.sender = sender  # client id of the publisher (or of the will's owner)
        self.username = username  # the publisher's user name, if it gave one
        self.peerhost = peerhost  # the publisher's IP address
        self.peername = peername  # the publisher's "ip:port"
        self.dup = dup  # DUP flag of the PUBLISH that brought it in
        self.expiry_at = expiry_at  # loop-clock deadline from Message-Expiry-Interval, or None
        self.received_at = time.time()
        self._id: str | None = None

    @property
    def id(self) -> str:
        """The message id shared by every event about this message; made on first use only."""
        mid = self._id
        if mid is None:
            mid = self._id = new_message_id(self.received_at)
        return mid


SubIds = int | tuple[int, ...] | None
"""The Subscription Identifier(s) a copy is sent with: one, several (one copy for overlapping
subscriptions, ``mqtt.overlapping_subscriptions = "single_copy"``), or none."""


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
