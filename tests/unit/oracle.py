"""The brute-force topic matcher the tries and the tests are checked against (MQTT 5 section 4.7)."""

from __future__ import annotations


def matches(topic: str, topic_filter: str) -> bool:
    """Does ``topic_filter`` match ``topic``? Level by level, straight from the spec text."""
    t_levels = topic.split("/")
    f_levels = topic_filter.split("/")
    if topic.startswith("$") and f_levels[0] in ("+", "#"):
        return False  # [MQTT-4.7.2-1]
    for i, f_level in enumerate(f_levels):
        if f_level == "#":
            return True  # the rest, including the parent level itself [MQTT-4.7.1-2]
        if i >= len(t_levels):
            return False
        if f_level != "+" and f_level != t_levels[i]:
            return False
    return len(f_levels) == len(t_levels)
