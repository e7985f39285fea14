"""Retained messages: the last retained message of each topic name, found by topic filter.

This module owns where retained messages live and which of them a new subscription receives
(MQTT 3.1.1 section 3.3.1.3, MQTT 5.0 section 3.3.1.3 and 3.8.4). The store does not decide when to
retain, replace or delete (a retained PUBLISH with an empty payload deletes [MQTT-3.3.1-10]); the
broker calls ``set`` and ``delete``. Messages are opaque objects here.

Messages are kept in a trie keyed by topic-name levels, so ``match_filter`` walks only the branches a
filter can reach instead of testing every retained topic:

- a literal level follows one child; ``+`` follows every child, including an empty level
  [MQTT-4.7.1-3];
- ``#`` takes the whole subtree, including the parent level itself (``a/#`` returns ``a``)
  [MQTT-4.7.1-2];
- a filter whose first level is ``+`` or ``#`` does not return topics starting with ``$``
  [MQTT-4.7.2-1].

Filters are not validated here; the broker checks them first (``mqhook.mqtt.topics``).
"""

from __future__ import annotations

from collections.abc import Iterator

__all__ = ["RetainedStore"]

_NONE = object()  # a node with no message of its own (None is a valid message object)


class _Node:
    __slots__ = ("children", "message")

    def __init__(self) -> None:
        self.children: dict[str, _Node] = {}
        self.message: object = _NONE


class RetainedStore:
    """Topic name -> retained message, searchable by topic filter."""

    __slots__ = ("_count", "_root")

    def __init__(self) -> None:
        self._root = _Node()
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def set(self, topic: str, message: object) -> None:
        """Retain ``message`` for ``topic``, replacing the one retained before [MQTT-3.3.1-5]."""
        node = self._root
        for level in topic.split("/"):
            child = node.children.get(level)
            if child is None:
                child = node.children[level] = _Node()
            node = child
        if node.message is _NONE:
            self._count += 1
        node.message = message

    def get(self, topic: str) -> object | None:
        """The message retained for ``topic``, or None."""
        node: _Node | None = self._root
        for level in topic.split("/"):
            assert node is not None
            node = node.children.get(level)
            if node is None:
                return None
        assert node is not None
        return None if node.message is _NONE else node.message

    def delete(self, topic: str) -> bool:
        """Forget the message retained for ``topic``; True if there was one. Empty nodes are pruned."""
        levels = topic.split("/")
        path = [self._root]
        for level in levels:
            child = path[-1].children.get(level)
            if child is None:
                return False
            path.append(child)
        if path[-1].message is _NONE:
            return False
        path[-1].message = _NONE
        self._count -= 1
        for i in range(len(levels), 0, -1):
            node = path[i]
            if node.children or node.message is not _NONE:
                break
            del path[i - 1].children[levels[i - 1]]
        return True

    def match_filter(self, topic_filter: str) -> Iterator[object]:
        """The retained messages whose topic matches ``topic_filter``, in no particular order.

        The matches are collected before the first is returned, so the store may change while
        the caller iterates (for example while it awaits sending each message).
        """
        levels = topic_filter.split("/")
        n = len(levels)
        found: list[object] = []
        # (node, index of the next filter level); the root's children are first-level topic levels.
        stack: list[tuple[_Node, int]] = [(self._root, 0)]
        while stack:
            node, i = stack.pop()
            if i == n:
                if node.message is not _NONE:
                    found.append(node.message)
                continue
            level = levels[i]
            at_root = i == 0
            if level == "#":
                # The parent level itself [MQTT-4.7.1-2]; the root is not a topic level.
                if not at_root and node.message is not _NONE:
                    found.append(node.message)
                _collect_subtree(node, found, skip_dollar=at_root)
            elif level == "+":
                for name, child in node.children.items():
                    if not (at_root and name.startswith("$")):  # [MQTT-4.7.2-1]
                        stack.append((child, i + 1))
            else:
                exact = node.children.get(level)
                if exact is not None:
                    stack.append((exact, i + 1))
        return iter(found)

    def all(self) -> list[object]:
        """Every retained message, ``$`` topics included, in no particular order."""
        found: list[object] = []
        _collect_subtree(self._root, found, skip_dollar=False)
        return found


def _collect_subtree(node: _Node, found: list[object], skip_dollar: bool) -> None:
    """Append every message below ``node`` (not ``node``'s own) to ``found``."""
    stack = [
        child for name, child in node.children.items() if not (skip_dollar and name.startswith("$"))
    ]  # [MQTT-4.7.2-1] when ``node`` is the root
    while stack:
        current = stack.pop()
        if current.message is not _NONE:
            found.append(current.message)
        stack.extend(current.children.values())
