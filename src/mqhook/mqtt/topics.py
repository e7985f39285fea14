"""Topic names and topic filters: validation and shared-subscription parsing.

This module owns the syntax rules of MQTT section 4.7. Matching a topic against filters is the
trie's job (``mqhook.matcher``); the tests hold it to a brute-force oracle of their own.
"""

from __future__ import annotations

from mqhook.errors import ProtocolError
from mqhook.mqtt.reason import TOPIC_FILTER_INVALID, TOPIC_NAME_INVALID

MAX_TOPIC_BYTES = 65535
SHARE_PREFIX = "$share/"


def _check_common(kind: str, text: str, code: int) -> None:
    """Rules shared by names and filters: non-empty [MQTT-4.7.3-1], no U+0000 [MQTT-4.7.3-2], length [MQTT-4.7.3-3]."""
    if not text:
        raise ProtocolError(code, f"{kind} is empty [MQTT-4.7.3-1]")
    if "\x00" in text:
        raise ProtocolError(code, f"{kind} {text!r} contains U+0000 [MQTT-4.7.3-2]")
    # Each character is at most 4 UTF-8 bytes: only long strings need the real count.
    if len(text) * 4 > MAX_TOPIC_BYTES:
        size = len(text.encode("utf-8", "surrogatepass"))
        if size > MAX_TOPIC_BYTES:
            raise ProtocolError(code, f"{kind} of {size} bytes exceeds {MAX_TOPIC_BYTES} bytes [MQTT-4.7.3-3]")


def validate_topic_name(name: str) -> None:
    """Raise ProtocolError(0x90) unless ``name`` is a valid topic name.

    A topic name is non-empty, has no U+0000, is at most 65535 UTF-8 bytes and
    contains no wildcard characters [MQTT-3.3.2-2] [MQTT-4.7.0-1].
    """
    _check_common("topic name", name, TOPIC_NAME_INVALID)
    if "+" in name or "#" in name:
        raise ProtocolError(TOPIC_NAME_INVALID, f"topic name {name!r} contains a wildcard '+' or '#' [MQTT-3.3.2-2]")


def validate_topic_filter(topic_filter: str) -> None:
    """Raise ProtocolError(0x8F) unless ``topic_filter`` is a valid topic filter.

    '#' must be alone in the last level [MQTT-4.7.1-1]; '+' must occupy a whole
    level [MQTT-4.7.1-2]. ``$share/...`` filters are checked as plain filters:
    call ``parse_shared`` first to validate the share syntax and get the real filter.
    """
    _check_common("topic filter", topic_filter, TOPIC_FILTER_INVALID)
    if "+" not in topic_filter and "#" not in topic_filter:
        return
    levels = topic_filter.split("/")
    last = len(levels) - 1
    for i, level in enumerate(levels):
        if "#" in level:
            if level != "#":
                raise ProtocolError(
                    TOPIC_FILTER_INVALID,
                    f"topic filter {topic_filter!r}: '#' must occupy a whole level [MQTT-4.7.1-1]",
                )
            if i != last:
                raise ProtocolError(
                    TOPIC_FILTER_INVALID,
                    f"topic filter {topic_filter!r}: '#' must be the last level [MQTT-4.7.1-1]",
                )
        if "+" in level and level != "+":
            raise ProtocolError(
                TOPIC_FILTER_INVALID,
                f"topic filter {topic_filter!r}: '+' must occupy a whole level [MQTT-4.7.1-2]",
            )


def parse_shared(topic_filter: str) -> tuple[str | None, str]:
    """Split ``$share/{group}/{filter}`` into ``(group, filter)``; ordinary filters give ``(None, filter)``.

    The share name must be non-empty and contain no '/', '+' or '#' [MQTT-4.8.2-1]
    [MQTT-4.8.2-2], and a non-empty filter must follow it. The returned filter is
    not validated here: pass it to ``validate_topic_filter``.
    """
    if not topic_filter.startswith(SHARE_PREFIX):
        return None, topic_filter
    group, slash, real = topic_filter[len(SHARE_PREFIX) :].partition("/")
    if not group:
        raise ProtocolError(TOPIC_FILTER_INVALID, f"shared filter {topic_filter!r}: share name is empty [MQTT-4.8.2-1]")
    if "+" in group or "#" in group:
        raise ProtocolError(
            TOPIC_FILTER_INVALID,
            f"shared filter {topic_filter!r}: share name {group!r} contains '+' or '#' [MQTT-4.8.2-2]",
        )
    if not slash or not real:
        raise ProtocolError(
            TOPIC_FILTER_INVALID,
            f"shared filter {topic_filter!r}: a topic filter must follow the share name [MQTT-4.8.2-2]",
        )
    return group, real
