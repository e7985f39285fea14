"""One suite for both topic tries (Cython and pure Python), checked against a brute-force matcher
written here, independently of the code under test (MQTT section 4.7)."""

from __future__ import annotations

import gc
import random
import weakref
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import mqhook._trie_py as _trie_py
from mqhook import matcher
from mqhook.matcher import PyTopicTrie

from .natives import both
from .oracle import matches

IMPLEMENTATIONS = list(reversed(both("mqhook._topic_trie", _trie_py, "TopicTrie")))  # python first
CTopicTrie = IMPLEMENTATIONS[1].values[0]

Trie = Any  # either implementation; they share one API
TrieFactory = Callable[[], Trie]


@pytest.fixture(params=IMPLEMENTATIONS)
def make_trie(request: pytest.FixtureRequest) -> TrieFactory:
    return request.param


def _matched_filters(trie: Trie, topic: str) -> list[str]:
    """Filters matched by ``topic``, for tries whose keys are the filters themselves."""
    return sorted(key for subs in trie.match(topic) for key in subs)


RULES = [
    # literal levels
    ("a/b", "a/b", True),
    ("a/b", "a/c", False),
    ("a/b", "a", False),
    ("a", "a/b", False),
    ("a/b", "a/b/", False),
    # empty levels [MQTT-4.7.1-1]
    ("a//b", "a//b", True),
    ("a//b", "a/b", False),
    ("/a", "/a", True),
    ("a/", "a/", True),
    ("a/", "a", False),
    ("", "", True),
    # '+' matches exactly one level, empty included [MQTT-4.7.1-3]
    ("+", "a", True),
    ("+", "", True),
    ("+", "a/b", False),
    ("+", "/", False),
    ("+/+", "/", True),
    ("a/+", "a/", True),
    ("a/+", "a", False),
    ("a/+/c", "a//c", True),
    ("a/+/c", "a/b/c", True),
    ("a/+/c", "a/b/d", False),
    ("/+", "/a", True),
    ("+/b/+", "a/b/c", True),
    # '#' matches the parent and any number of children [MQTT-4.7.1-2]
    ("#", "a", True),
    ("#", "a/b/c", True),
    ("#", "", True),
    ("#", "/", True),
    ("a/#", "a", True),
    ("a/#", "a/", True),
    ("a/#", "a/b/c", True),
    ("a/#", "ab", False),
    ("a/#", "b/a", False),
    ("a/+/#", "a/b", True),
    ("a/+/#", "a", False),
    ("+/#", "a", True),
    # '$' topics [MQTT-4.7.2-1]
    ("#", "$SYS", False),
    ("#", "$SYS/x", False),
    ("+", "$SYS", False),
    ("+", "$", False),
    ("+/x", "$SYS/x", False),
    ("+/#", "$SYS/a", False),
    ("$SYS/#", "$SYS", True),
    ("$SYS/#", "$SYS/a/b", True),
    ("$SYS/+", "$SYS/a", True),
    ("$", "$", True),
    ("a/#", "a/$b", True),
    ("+/$x", "a/$x", True),
    ("#", "a$", True),
    # characters beyond ASCII (1, 2 and 4 bytes per character in CPython's str)
    ("é/+", "é/x", True),
    ("é/€", "é/€", True),
    ("é/+", "é/€", True),
    ("a/é", "a/é/€", False),
    ("€/#", "€/a", True),
    ("a/+", "a/€", True),
    ("😀/+/€", "😀/é/€", True),
    ("😀/a", "😀/b", False),
]


@pytest.mark.parametrize(("topic_filter", "topic", "expected"), RULES)
def test_matching_rules(make_trie: TrieFactory, topic_filter: str, topic: str, expected: bool) -> None:
    assert matches(topic, topic_filter) is expected  # the oracle agrees with the table
    trie = make_trie()
    trie.insert(topic_filter, "sub", 1)
    assert (trie.match(topic) == [{"sub": 1}]) is expected
    if not expected:
        assert trie.match(topic) == []


def test_all_rules_in_one_trie(make_trie: TrieFactory) -> None:
    trie = make_trie()
    filters = sorted({f for f, _, _ in RULES})
    for f in filters:
        trie.insert(f, f, None)
    for topic in sorted({t for _, t, _ in RULES}):
        assert _matched_filters(trie, topic) == [f for f in filters if matches(topic, f)], topic


def test_match_returns_the_tries_own_dicts(make_trie: TrieFactory) -> None:
    trie = make_trie()
    assert trie.match("a/b") == []
    trie.insert("a/+", "k1", "v1")
    trie.insert("a/+", "k2", "v2")
    first = trie.match("a/b")
    assert first == [{"k1": "v1", "k2": "v2"}]
    assert trie.match("a/c")[0] is first[0]


def test_insert_replaces_value_and_reports_new_keys(make_trie: TrieFactory) -> None:
    trie = make_trie()
    assert trie.insert("a/b", "k", 1) is True
    assert trie.insert("a/b", "k", 2) is False
    assert trie.get("a/b", "k") == 2
    assert trie.insert("a/b", "k2", 3) is True
    assert trie.insert("a/+", "k", 4) is True
    assert len(trie) == 3
    assert trie.filter_count == 2


def test_get_missing(make_trie: TrieFactory) -> None:
    trie = make_trie()
    assert trie.get("a", "k") is None
    trie.insert("a/b", "k", 1)
    assert trie.get("a", "k") is None
    assert trie.get("a/b", "other") is None
    assert trie.get("a/b/c", "k") is None


def test_remove(make_trie: TrieFactory) -> None:
    trie = make_trie()
    trie.insert("a/b", "k1", 1)
    trie.insert("a/b", "k2", 2)
    assert trie.remove("a/b", "nope") is False
    assert trie.remove("a/c", "k1") is False
    assert trie.remove("a", "k1") is False
    assert trie.remove("a/b/c", "k1") is False
    assert trie.remove("a/b", "k1") is True
    assert trie.remove("a/b", "k1") is False
    assert trie.match("a/b") == [{"k2": 2}]
    assert trie.remove("a/b", "k2") is True
    assert trie.match("a/b") == []
    assert (len(trie), trie.filter_count, list(trie.filters())) == (0, 0, [])


def test_prune_keeps_nodes_still_in_use(make_trie: TrieFactory) -> None:
    trie = make_trie()
    for f in ("a", "a/b/c", "a/+/c", "a/#", "a/b/c/d"):
        trie.insert(f, f, None)
    trie.remove("a/b/c", "a/b/c")
    assert _matched_filters(trie, "a/b/c/d") == ["a/#", "a/b/c/d"]
    assert _matched_filters(trie, "a/b/c") == ["a/#", "a/+/c"]
    trie.remove("a/b/c/d", "a/b/c/d")
    trie.remove("a", "a")
    assert _matched_filters(trie, "a") == ["a/#"]
    trie.remove("a/#", "a/#")
    assert _matched_filters(trie, "a/x/c") == ["a/+/c"]
    trie.remove("a/+/c", "a/+/c")
    assert trie.match("a/x/c") == []
    assert trie.filter_count == 0
    trie.insert("a/b/c", "again", None)
    assert _matched_filters(trie, "a/b/c") == ["again"]


def test_python_trie_prunes_to_an_empty_root() -> None:
    trie = PyTopicTrie()
    for f in ("a/b/c", "a/+/#", "#", "+", "a//b"):
        trie.insert(f, "k", None)
    for f in ("a/b/c", "a/+/#", "#", "+", "a//b"):
        trie.remove(f, "k")
    assert trie._root.is_empty()


def test_many_siblings_insert_and_remove(make_trie: TrieFactory) -> None:
    """Wide nodes: the Cython trie's open-addressing table grows and deletes without tombstones."""
    trie = make_trie()
    names = [f"s{i}" for i in range(3000)] + ["", "é", "€", "😀"]
    for name in names:
        trie.insert(f"root/{name}", name, None)
        trie.insert(f"root/{name}/x", name, None)
    rng = random.Random(7)
    removed = set(rng.sample(names, len(names) // 2))
    for name in removed:  # both filters go, so the sibling node itself is unlinked from "root"
        assert trie.remove(f"root/{name}", name)
        assert trie.remove(f"root/{name}/x", name)
    for name in names:
        expected = [] if name in removed else [{name: None}]
        assert trie.match(f"root/{name}") == expected, name
        assert trie.match(f"root/{name}/x") == expected, name
    assert trie.filter_count == 2 * (len(names) - len(removed))


def test_long_levels(make_trie: TrieFactory) -> None:
    """Levels longer than the Cython node's inline key (10 bytes) are stored apart from the node."""
    trie = make_trie()
    names = [f"device-{i:04d}-{'x' * (i % 7)}" for i in range(600)] + ["é" * 9, "€" * 6, "😀" * 3]
    for name in names:
        trie.insert(f"site/{name}/+", name, None)
        trie.insert(f"site/{name}", name, None)  # exact: not a trie node
    for name in names[::2]:
        assert trie.remove(f"site/{name}/+", name)
    for name in names:
        assert _matched_filters(trie, f"site/{name}") == [name], name
        assert _matched_filters(trie, f"site/{name}/v") == ([] if names.index(name) % 2 == 0 else [name]), name
    assert _matched_filters(trie, "site/device-0001-") == []


def test_exact_and_wildcard_filters_share_prefixes(make_trie: TrieFactory) -> None:
    """The Cython trie keeps exact filters apart from its nodes: '#' still matches its parent level, and
    a topic with a '+' or '#' level (not a valid name, matched all the same) meets wildcards only."""
    trie = make_trie()
    filters = ["a/b", "a/#", "a/+", "a/b/#", "+/b", "a/+/#", "a", "#"]
    for f in filters:
        trie.insert(f, f, None)
    for topic in ("a/b", "a", "a/+", "a/#", "+", "#", "a/b/c"):
        assert _matched_filters(trie, topic) == sorted(f for f in filters if matches(topic, f)), topic
    trie.remove("a/b", "a/b")
    trie.remove("a/#", "a/#")
    assert _matched_filters(trie, "a/b") == ["#", "+/b", "a/+", "a/+/#", "a/b/#"]


def test_match_order_is_the_references(make_trie: TrieFactory) -> None:
    """Callers see matches in order (routing delivers in it): the same lists as the Python reference."""
    rng = random.Random(11)
    levels = ["a", "b", "", "long-level-name", "é", "$x"]
    filters = {
        "/".join(rng.choice([*levels, "+"]) for _ in range(rng.randrange(1, 5))) + rng.choice(["", "/#"])
        for _ in range(400)
    }
    trie, reference = make_trie(), PyTopicTrie()
    for f in sorted(filters):
        trie.insert(f, f, None)
        reference.insert(f, f, None)
    for _ in range(300):
        topic = "/".join(rng.choice(levels) for _ in range(rng.randrange(1, 6)))
        assert trie.match(topic) == reference.match(topic), topic


def test_counts_and_filters(make_trie: TrieFactory) -> None:
    trie = make_trie()
    inserted = {"a/b": ["k1", "k2"], "a/+": ["k1"], "#": ["k3"], "": ["k4"], "a//#": ["k5"]}
    for f, keys in inserted.items():
        for key in keys:
            trie.insert(f, key, None)
    assert len(trie) == 6
    assert trie.filter_count == 5
    assert sorted(trie.filters()) == sorted(inserted)
    for f in trie.filters():  # a snapshot: removing while iterating is fine
        for key in inserted[f]:
            trie.remove(f, key)
    assert (len(trie), trie.filter_count) == (0, 0)


@dataclass(frozen=True)
class _SharedGroup:
    """What the broker inserts for ``$share/<name>/<filter>``: one key per group."""

    name: str


def test_shared_groups_are_plain_keys(make_trie: TrieFactory) -> None:
    trie = make_trie()
    g1, g2 = _SharedGroup("g1"), _SharedGroup("g2")
    trie.insert("sensors/+/temp", "plain-client", {"qos": 1})
    trie.insert("sensors/+/temp", g1, {"members": ["c1", "c2"]})
    trie.insert("sensors/+/temp", g2, {"members": ["c3"]})
    trie.insert("sensors/#", g1, {"members": ["c4"]})  # same group name, another filter
    assert len(trie) == 4
    assert trie.filter_count == 2
    matched = trie.match("sensors/kitchen/temp")
    by_filter = sorted(matched, key=len)
    assert by_filter[0] == {g1: {"members": ["c4"]}}
    assert by_filter[1] == {
        "plain-client": {"qos": 1},
        g1: {"members": ["c1", "c2"]},
        g2: {"members": ["c3"]},
    }
    assert trie.get("sensors/+/temp", _SharedGroup("g2")) == {"members": ["c3"]}
    assert trie.remove("sensors/+/temp", _SharedGroup("g1"))
    groups = [key for subs in trie.match("sensors/x/temp") for key in subs if isinstance(key, _SharedGroup)]
    assert sorted(g.name for g in groups) == ["g1", "g2"]


@pytest.mark.parametrize("key", [7, ("client", 1), frozenset({"x"}), None, b"id"])
def test_any_hashable_key(make_trie: TrieFactory, key: Hashable) -> None:
    trie = make_trie()
    assert trie.insert("a/#", key, "v")
    assert trie.match("a/b") == [{key: "v"}]
    assert trie.remove("a/#", key)


def test_deep_topics(make_trie: TrieFactory) -> None:
    """Thousands of levels: no recursion limit, and past any fixed-size scratch buffer."""
    trie = make_trie()
    deep = "/".join(f"l{i}" for i in range(3000))
    trie.insert(deep, "exact", None)
    trie.insert(deep[: deep.index("/l2000/")] + "/#", "hash", None)
    trie.insert("/".join(["+"] * 3000), "plus", None)
    assert _matched_filters(trie, deep) == ["exact", "hash", "plus"]
    wide = deep + "/€"  # two bytes per character
    assert _matched_filters(trie, wide) == ["hash"]
    for key, f in (("exact", deep), ("plus", "/".join(["+"] * 3000))):
        trie.remove(f, key)
    assert _matched_filters(trie, deep) == ["hash"]


def test_cycles_through_the_trie_are_collected(make_trie: TrieFactory) -> None:
    class Session:
        trie: Any = None

    trie = make_trie()
    session = Session()
    session.trie = trie  # value -> trie -> its dicts -> value
    trie.insert("a/b", "client", session)
    probe = weakref.ref(session)
    del trie, session
    gc.collect()
    assert probe() is None


def test_many_exact_filters_grow_and_shrink(make_trie: TrieFactory) -> None:
    """Thousands of exact filters (the compiled trie's own table grows, then shrinks as they go)."""
    trie = make_trie()
    filters = [f"e{i}/x{i % 7}" for i in range(3000)]
    for f in filters:
        trie.insert(f, f, None)
    trie.insert("e1/+", "e1/+", None)
    order = filters[:]
    random.Random(5).shuffle(order)
    for n, f in enumerate(order):
        if n % 500 == 0:
            for g in order[n : n + 200 : 7]:
                assert _matched_filters(trie, g) == sorted({g, "e1/+"} if g.startswith("e1/") else {g})
        assert trie.remove(f, f)
        assert not trie.remove(f, f)
        assert trie.get(f, f) is None
    assert trie.filter_count == 1
    assert list(trie.filters()) == ["e1/+"]
    assert _matched_filters(trie, "e1/x1") == ["e1/+"]


def test_remove_survives_a_value_that_changes_the_trie(make_trie: TrieFactory) -> None:
    """Dropping a removed value may run its __del__, which may insert filters (and grow tables)."""
    trie = make_trie()

    class Reentrant:
        def __del__(self) -> None:
            for i in range(100):
                trie.insert(f"other/{i}", "k", None)

    trie.insert("a/b", "k", Reentrant())
    assert trie.remove("a/b", "k")
    assert trie.match("a/b") == []
    assert trie.filter_count == 100
    assert len(trie) == 100
    assert _matched_filters(trie, "other/7") == ["k"]


def test_module_exports() -> None:
    assert matcher.IMPLEMENTATION in ("cython", "python")
    assert matcher.PyTopicTrie is PyTopicTrie
    expected = CTopicTrie if matcher.IMPLEMENTATION == "cython" else PyTopicTrie
    assert matcher.TopicTrie is expected


# --- property tests against the brute-force matcher ---------------------------------------------

_TOPIC_LEVEL = st.sampled_from(["a", "b", "", "$", "$a", "é", "€"])
_FILTER_LEVEL = st.one_of(_TOPIC_LEVEL, st.just("+"))
_TOPICS = st.lists(_TOPIC_LEVEL, min_size=1, max_size=5).map("/".join)
_FILTERS = st.builds(
    lambda levels, tail: "/".join(levels + (["#"] if tail else [])),
    st.lists(_FILTER_LEVEL, min_size=0, max_size=4),
    st.booleans(),
)


@settings(max_examples=300, deadline=None)
@given(filters=st.lists(_FILTERS, min_size=1, max_size=12), topics=st.lists(_TOPICS, min_size=1, max_size=8))
@pytest.mark.parametrize("trie_cls", IMPLEMENTATIONS)
def test_match_agrees_with_brute_force(trie_cls: TrieFactory, filters: list[str], topics: list[str]) -> None:
    trie = trie_cls()
    for f in filters:
        trie.insert(f, f, None)
    unique = sorted(set(filters))
    for topic in topics:
        assert _matched_filters(trie, topic) == [f for f in unique if matches(topic, f)], topic
    for f in unique[::2]:  # remove some, prune, and check again
        trie.remove(f, f)
    remaining = unique[1::2]
    for topic in topics:
        assert _matched_filters(trie, topic) == [f for f in remaining if matches(topic, f)], topic


_OPS = st.lists(st.tuples(st.booleans(), _FILTERS, st.sampled_from(["k1", "k2", "k3"]), st.integers(0, 3)))


@settings(max_examples=200, deadline=None)
@given(ops=_OPS)
@pytest.mark.parametrize("trie_cls", IMPLEMENTATIONS)
def test_operations_agree_with_a_dict_model(trie_cls: TrieFactory, ops: list[tuple[bool, str, str, int]]) -> None:
    trie = trie_cls()
    model: dict[str, dict[str, int]] = {}
    for is_insert, f, key, value in ops:
        if is_insert:
            assert trie.insert(f, key, value) is (key not in model.get(f, {}))
            model.setdefault(f, {})[key] = value
        else:
            assert trie.remove(f, key) is (key in model.get(f, {}))
            model.get(f, {}).pop(key, None)
            if f in model and not model[f]:
                del model[f]
        assert len(trie) == sum(map(len, model.values()))
        assert trie.filter_count == len(model)
    assert sorted(trie.filters()) == sorted(model)
    for f, subs in model.items():
        for key, value in subs.items():
            assert trie.get(f, key) == value
