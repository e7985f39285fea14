"""Pure-Python topic-filter trie: the reference for, and fallback of, the Cython trie in ext/.

This module owns the matching rules of MQTT topic filters against topic names
(MQTT 3.1.1 section 4.7, MQTT 5.0 section 4.7). The trie maps each topic FILTER to a
dict ``{key: value}`` (key: a subscriber id or shared-subscription group, any hashable;
value: opaque, e.g. subscription options) and answers which of those dicts match a
topic NAME. It never delivers anything and never validates filters: the broker checks
them (see ``mqhook.mqtt.topics``) before inserting.

Rules implemented by ``match``:

- levels are separated by ``/`` and may be empty: ``a//b`` has three levels [MQTT-4.7.1-1];
- ``+`` matches exactly one level, including an empty one [MQTT-4.7.1-3];
- ``#`` matches its parent level and any number of child levels, so ``a/#`` matches
  ``a`` and ``a/b/c`` [MQTT-4.7.1-2];
- a filter whose first level is ``+`` or ``#`` does not match a topic name starting
  with ``$`` [MQTT-4.7.2-1].

``ext/topic_trie.pyx`` implements the same class, same API; ``tests/unit/test_matcher.py``
runs one suite over both.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator

__all__ = ["TopicTrie"]


class _Node:
    """One filter level. ``plus`` and ``hash`` hold the wildcard children apart from the
    literal ones so ``match`` finds them without a dict lookup."""

    __slots__ = ("children", "hash", "plus", "subs")

    def __init__(self) -> None:
        self.children: dict[str, _Node] = {}
        self.plus: _Node | None = None
        self.hash: _Node | None = None
        # None while no key is subscribed to the filter that ends here.
        self.subs: dict[Hashable, object] | None = None

    def is_empty(self) -> bool:
        return self.subs is None and not self.children and self.plus is None and self.hash is None

    def child(self, level: str) -> _Node | None:
        if level == "+":
            return self.plus
        if level == "#":
            return self.hash
        return self.children.get(level)

    def add_child(self, level: str) -> _Node:
        node = _Node()
        if level == "+":
            self.plus = node
        elif level == "#":
            self.hash = node
        else:
            self.children[level] = node
        return node

    def drop_child(self, level: str) -> None:
        if level == "+":
            self.plus = None
        elif level == "#":
            self.hash = None
        else:
            del self.children[level]


class TopicTrie:
    """Topic filters -> ``{key: value}`` dicts, matched against topic names."""

    __slots__ = ("_entries", "_filters", "_root")

    def __init__(self) -> None:
        self._root = _Node()
        self._entries = 0  # (filter, key) pairs
        self._filters = 0  # nodes whose subs dict is not None

    def __len__(self) -> int:
        return self._entries

    @property
    def filter_count(self) -> int:
        """The number of distinct filters with at least one key."""
        return self._filters

    def insert(self, topic_filter: str, key: Hashable, value: object) -> bool:
        """Store ``value`` for ``key`` under ``topic_filter``; True if ``key`` was new there."""
        node = self._root
        for level in topic_filter.split("/"):
            nxt = node.child(level)
            node = nxt if nxt is not None else node.add_child(level)
        subs = node.subs
        if subs is None:
            node.subs = subs = {}
            self._filters += 1
        is_new = key not in subs
        subs[key] = value
        if is_new:
            self._entries += 1
        return is_new

    def remove(self, topic_filter: str, key: Hashable) -> bool:
        """Remove ``key`` from ``topic_filter``; True if it was there. Empty nodes are pruned."""
        levels = topic_filter.split("/")
        path = [self._root]
        node: _Node | None = self._root
        for level in levels:
            assert node is not None
            node = node.child(level)
            if node is None:
                return False
            path.append(node)
        subs = node.subs if node is not None else None
        if subs is None or key not in subs:
            return False
        del subs[key]
        self._entries -= 1
        if subs:
            return True
        path[-1].subs = None
        self._filters -= 1
        # Prune from the leaf up while nodes hold nothing.
        for i in range(len(levels), 0, -1):
            if not path[i].is_empty():
                break
            path[i - 1].drop_child(levels[i - 1])
        return True

    def get(self, topic_filter: str, key: Hashable) -> object | None:
        """The value stored for ``key`` under ``topic_filter``, or None."""
        node: _Node | None = self._root
        for level in topic_filter.split("/"):
            assert node is not None
            node = node.child(level)
            if node is None:
                return None
        subs = node.subs if node is not None else None
        return None if subs is None else subs.get(key)

    def match(self, topic: str) -> list[dict[Hashable, object]]:
        """The subscriber dicts of every filter matching the topic name ``topic``.

        The dicts are the trie's own: callers must not mutate them.
        """
        levels = topic.split("/")
        n = len(levels)
        out: list[dict[Hashable, object]] = []
        root = self._root
        # [MQTT-4.7.2-1]: '+' or '#' as the first level never matches a topic starting with '$'.
        dollar = topic.startswith("$")
        # Depth-first over the matching branches with an explicit stack: topics may have
        # thousands of levels, deeper than Python's recursion limit.
        stack: list[tuple[_Node, int]] = [(root, 0)]
        while stack:
            node, i = stack.pop()
            wild_ok = not dollar or node is not root
            hash_node = node.hash
            # '#' also matches the parent level [MQTT-4.7.1-2], so it counts whether or not levels remain.
            if hash_node is not None and hash_node.subs is not None and wild_ok:
                out.append(hash_node.subs)
            if i == n:
                if node.subs is not None:
                    out.append(node.subs)
                continue
            if node.plus is not None and wild_ok:
                stack.append((node.plus, i + 1))
            child = node.children.get(levels[i])
            if child is not None:
                stack.append((child, i + 1))
        return out

    def filters(self) -> Iterator[str]:
        """Every filter that has at least one key (a snapshot, in no particular order)."""
        found: list[str] = []
        stack: list[tuple[_Node, str | None]] = [(self._root, None)]
        while stack:
            node, name = stack.pop()
            if node.subs is not None and name is not None:
                found.append(name)
            prefix = "" if name is None else name + "/"
            for level, child in node.children.items():
                stack.append((child, prefix + level))
            if node.plus is not None:
                stack.append((node.plus, prefix + "+"))
            if node.hash is not None:
                stack.append((node.hash, prefix + "#"))
        return iter(found)
