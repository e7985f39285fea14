"""RetainedStore: set/get/delete, and match_filter checked against the brute-force oracle."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mqhook.broker.retained import RetainedStore

from .oracle import matches

TOPICS = ["a", "a/b", "a/b/c", "a//c", "a/", "/a", "", "b", "$SYS", "$SYS/x", "$SYS/x/y", "a/$x", "é/€"]


@pytest.fixture
def store() -> RetainedStore:
    s = RetainedStore()
    for topic in TOPICS:
        s.set(topic, f"msg:{topic}")
    return s


def _sorted_matches(store: RetainedStore, topic_filter: str) -> list[str]:
    return sorted(str(message) for message in store.match_filter(topic_filter))


@pytest.mark.parametrize(
    ("topic_filter", "expected"),
    [
        ("a/b", ["a/b"]),
        ("a/+", ["a/", "a/$x", "a/b"]),
        ("+", ["", "a", "b"]),  # not $SYS [MQTT-4.7.2-1]
        ("+/+", ["/a", "a/", "a/$x", "a/b", "é/€"]),
        ("a/+/c", ["a//c", "a/b/c"]),
        ("a/#", ["a", "a/", "a//c", "a/$x", "a/b", "a/b/c"]),  # 'a' itself [MQTT-4.7.1-2]
        ("#", sorted(t for t in TOPICS if not t.startswith("$"))),
        ("+/#", sorted(t for t in TOPICS if not t.startswith("$"))),
        ("$SYS/#", ["$SYS", "$SYS/x", "$SYS/x/y"]),
        ("$SYS/+", ["$SYS/x"]),
        ("$SYS", ["$SYS"]),
        ("", [""]),
        ("/+", ["/a"]),
        ("a/b/c/#", ["a/b/c"]),
        ("nope/#", []),
        ("a/b/c/d", []),
        ("é/+", ["é/€"]),
    ],
)
def test_match_filter(store: RetainedStore, topic_filter: str, expected: list[str]) -> None:
    assert _sorted_matches(store, topic_filter) == [f"msg:{t}" for t in sorted(expected)]
    assert sorted(expected) == sorted(t for t in TOPICS if matches(t, topic_filter))  # the oracle agrees


def test_set_replaces_and_counts() -> None:
    store = RetainedStore()
    assert len(store) == 0
    store.set("a/b", 1)
    store.set("a/b", 2)
    store.set("a", None)  # None is a message like any other
    assert len(store) == 2
    assert store.get("a/b") == 2
    assert store.get("a") is None
    assert list(store.match_filter("a")) == [None]
    assert store.get("a/b/c") is None
    assert store.get("x") is None


def test_delete_prunes_but_keeps_neighbours(store: RetainedStore) -> None:
    count = len(store)
    assert store.delete("a/b") is True
    assert store.delete("a/b") is False
    assert store.delete("a/b/c/d") is False
    assert store.delete("zzz") is False
    assert len(store) == count - 1
    assert store.get("a/b/c") == "msg:a/b/c"
    assert _sorted_matches(store, "a/+") == ["msg:a/", "msg:a/$x"]
    for topic in TOPICS:
        store.delete(topic)
    assert len(store) == 0
    assert list(store.match_filter("#")) == []
    assert store._root.children == {}


def test_store_may_change_while_iterating(store: RetainedStore) -> None:
    for message in store.match_filter("#"):
        assert isinstance(message, str)
        store.delete(message.removeprefix("msg:"))
        store.set("new/topic", "late")
    assert list(store.match_filter("#")) == ["late"]


def test_deep_topics() -> None:
    store = RetainedStore()
    deep = "/".join(f"l{i}" for i in range(3000))
    store.set(deep, "deep")
    assert list(store.match_filter("/".join(["+"] * 3000))) == ["deep"]
    assert list(store.match_filter("l0/l1/#")) == ["deep"]
    assert store.delete(deep)
    assert store._root.children == {}


_LEVEL = st.sampled_from(["a", "b", "", "$", "$a", "é"])
_TOPIC = st.lists(_LEVEL, min_size=1, max_size=4).map("/".join)
_FILTER = st.builds(
    lambda levels, tail: "/".join(levels + (["#"] if tail else [])),
    st.lists(st.one_of(_LEVEL, st.just("+")), min_size=0, max_size=4),
    st.booleans(),
)


@settings(max_examples=300, deadline=None)
@given(
    topics=st.lists(_TOPIC, max_size=15),
    deleted=st.lists(_TOPIC, max_size=5),
    filters=st.lists(_FILTER, min_size=1, max_size=6),
)
def test_match_filter_agrees_with_brute_force(topics: list[str], deleted: list[str], filters: list[str]) -> None:
    store = RetainedStore()
    model: dict[str, str] = {}
    for topic in topics:
        store.set(topic, topic)
        model[topic] = topic
    for topic in deleted:
        assert store.delete(topic) is (model.pop(topic, None) is not None)
    assert len(store) == len(model)
    for topic_filter in filters:
        expected = sorted(t for t in model if matches(t, topic_filter))
        assert _sorted_matches(store, topic_filter) == expected, topic_filter
    for topic, message in model.items():
        assert store.get(topic) == message
