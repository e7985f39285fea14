"""MQTT topic names and filters as NATS subjects: an injective, wildcard-safe encoding (pure, no I/O).

A topic ``l1/l2/...`` becomes ``mqhook.m.K.T1.T2...``:

- ``K`` is ``s`` for a topic whose first level starts with ``$`` and ``t`` for every other, so the
  ``*`` and ``>`` that ``+`` and ``#`` become at the first level never reach a ``$`` topic
  [MQTT-4.7.2-1]; a filter whose first level is a literal ``$...`` subscribes under ``s``.
- Each MQTT level is one NATS token: bytes in ``[A-Za-z0-9_-]`` stay, every other byte of the level's
  UTF-8 (``.``, ``*``, ``>``, ``$``, space, ``=`` itself, non-ASCII) becomes ``=XX`` (uppercase hex).
  So no token is ever a NATS wildcard or holds a separator, and a level round-trips exactly.
- An empty level is the token ``=``, which no non-empty level encodes to (an escape is always three
  characters), so the encoding stays injective.

Filters: ``+`` -> ``*``; ``a/#`` -> both ``a`` (the parent level, [MQTT-4.7.1-2]) and ``a.>``; ``#``
alone -> ``>`` under ``t`` only (a topic has at least one level, so there is no parent to add).
"""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache

__all__ = ["PREFIX", "decode_topic", "encode_level", "encode_topic", "filter_subjects", "queue_name"]

PREFIX = "mqhook.m"
EMPTY = "="
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


def _escape(match: re.Match[str]) -> str:
    return "".join(f"={b:02X}" for b in match.group().encode("utf-8", "surrogatepass"))


def encode_level(level: str) -> str:
    """One MQTT level -> one NATS token (never empty, never a wildcard, no ``.``)."""
    if not level:
        return EMPTY
    return _UNSAFE.sub(_escape, level)


def decode_level(token: str) -> str:
    if token == EMPTY:
        return ""
    if "=" not in token:
        return token
    out = bytearray()
    i = 0
    n = len(token)
    while i < n:
        c = token[i]
        if c == "=":
            out.append(int(token[i + 1 : i + 3], 16))
            i += 3
        else:
            out.append(ord(c))
            i += 1
    return out.decode("utf-8", "surrogatepass")


def _kind(first_level: str) -> str:
    return "s" if first_level.startswith("$") else "t"


@lru_cache(maxsize=4096)
def encode_topic(topic: str) -> str:
    """A topic name -> the NATS subject it is published under."""
    levels = topic.split("/")
    return ".".join((PREFIX, _kind(levels[0]), *map(encode_level, levels)))


def decode_topic(subject: str) -> str:
    """The inverse of ``encode_topic``; ValueError if ``subject`` is not one of its subjects."""
    head = PREFIX + "."
    if not subject.startswith(head):
        raise ValueError(f"not an mqhook subject: {subject!r}")
    tokens = subject[len(head) :].split(".")
    if len(tokens) < 2 or tokens[0] not in ("s", "t"):
        raise ValueError(f"not an mqhook subject: {subject!r}")
    topic = "/".join(map(decode_level, tokens[1:]))
    if _kind(topic.split("/", 1)[0]) != tokens[0]:
        raise ValueError(f"not an mqhook subject: {subject!r}")
    return topic


def filter_subjects(topic_filter: str) -> list[str]:
    """A (non-shared, valid) topic filter -> the NATS subjects to subscribe to, one or two."""
    levels = topic_filter.split("/")
    first = levels[0]
    kind = "t" if first in ("+", "#") else _kind(first)
    hash_last = levels[-1] == "#"
    if hash_last:
        levels.pop()
    tokens = [PREFIX, kind, *("*" if level == "+" else encode_level(level) for level in levels)]
    if not hash_last:
        return [".".join(tokens)]
    parent = ".".join(tokens)
    if not levels:  # "#" alone: every non-$ topic
        return [parent + ".>"]
    return [parent, parent + ".>"]


def queue_name(group: str, topic_filter: str) -> str:
    """The NATS queue group of ``$share/{group}/{filter}``: nats-server picks one member per queue
    name among all matching subscriptions, whatever their subjects, so the name carries a hash of
    the filter (``$share/g/a/#`` and ``$share/g/a/b`` are different groups in MQTT)."""
    digest = hashlib.sha256(topic_filter.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{encode_level(group)}-{digest}"
