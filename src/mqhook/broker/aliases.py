"""Topic aliases of one MQTT 5 connection, both ways (section 3.3.2.3.4).

This module owns the two alias tables a connection keeps:

- ``InboundAliases``: the aliases the client sets on its PUBLISHes (at most the broker's
  ``topic_alias_maximum``, holding at most ``max_topic_alias_bytes`` of topic names): a PUBLISH
  with a topic and an alias sets it, one with an empty topic uses it;
- ``OutboundAliases``: the aliases the broker uses towards a client that allows them (at most the
  least of the client's Topic-Alias-Maximum and ``outbound_topic_aliases``). The first topics get
  one each and keep it; later topics go whole: the table is bounded and never rewritten. A new
  alias is recorded only once the PUBLISH that teaches it to the client was written (``commit``).
"""

from __future__ import annotations

from typing import Any

from mqhook.errors import ProtocolError
from mqhook.mqtt import reason as R

__all__ = ["AliasBytesExceeded", "InboundAliases", "OutboundAliases"]


class AliasBytesExceeded(ProtocolError):
    """A PUBLISH set an inbound alias past ``max_topic_alias_bytes`` (closes with 0x94)."""


class InboundAliases:
    """The client's aliases: alias -> topic, made on first use. The topic names held are bounded by
    ``max_bytes`` (their characters): setting an alias beyond is ``AliasBytesExceeded``."""

    __slots__ = ("_topics", "max_bytes", "maximum", "size")

    def __init__(self, maximum: int, max_bytes: int = 1 << 62) -> None:
        self.maximum = maximum
        self.max_bytes = max_bytes
        self.size = 0  # characters of the topic names held
        self._topics: dict[int, str] = {}

    def resolve(self, topic: str, props: dict[str, Any]) -> str:
        """The topic of a PUBLISH: set or use its Topic-Alias; ProtocolError if it cannot be known."""
        alias = props.get("Topic-Alias")
        if alias is None:
            if not topic:
                raise ProtocolError(R.PROTOCOL_ERROR, "PUBLISH with an empty topic and no Topic Alias")
            return topic
        if alias == 0 or alias > self.maximum:
            raise ProtocolError(R.TOPIC_ALIAS_INVALID, f"Topic Alias {alias} is outside 1..{self.maximum}")
        if topic:
            topics = self._topics
            old = topics.get(alias)
            size = self.size + len(topic) - (len(old) if old is not None else 0)
            if size > self.max_bytes:
                raise AliasBytesExceeded(
                    R.TOPIC_ALIAS_INVALID,
                    f"Topic Alias {alias}: this connection's aliases would hold {size} bytes of topic names, "
                    f"more than max_topic_alias_bytes {self.max_bytes}",
                )
            topics[alias] = topic
            self.size = size
            return topic
        known = self._topics.get(alias)
        if known is None:
            raise ProtocolError(R.PROTOCOL_ERROR, f"Topic Alias {alias} was never set on this connection")
        return known


class OutboundAliases:
    """Our aliases towards the client: topic -> alias."""

    __slots__ = ("_aliases", "maximum")

    def __init__(self, maximum: int) -> None:
        self.maximum = maximum
        self._aliases: dict[str, int] = {}

    def apply(self, topic: str, props: dict[str, Any]) -> tuple[str, dict[str, Any], int]:
        """``(topic name to send, properties to send, new alias or 0)``: a known topic goes as its alias
        and an empty name; a new one, while aliases are left, whole with a new alias, which the
        caller ``commit``s once that PUBLISH is written; any other whole, as it came."""
        alias = self._aliases.get(topic)
        if alias is not None:
            props = dict(props)
            props["Topic-Alias"] = alias
            return "", props, 0
        if len(self._aliases) < self.maximum:
            alias = len(self._aliases) + 1
            props = dict(props)
            props["Topic-Alias"] = alias
            return topic, props, alias
        return topic, props, 0

    def commit(self, topic: str, alias: int) -> None:
        """The PUBLISH that gave ``topic`` its ``alias`` was written: the client knows it now."""
        self._aliases[topic] = alias
