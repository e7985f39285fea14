"""The MQTT -> NATS subject encoding (mqhook.cluster.subjects) against the broker's own trie.

NATS matching is implemented here as the counterpart of the trie: subjects split on '.', '*' matches
one token, '>' one or more trailing tokens. For random topics and filters, "some subject of the
filter matches encode(topic) in NATS" must equal "the filter matches the topic in the trie".
"""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mqhook.cluster.subjects import decode_topic, encode_topic, filter_subjects, queue_name
from mqhook.matcher import TopicTrie

_TOKEN = re.compile(r"^(\*|>|[A-Za-z0-9_=-]+)$")


def nats_match(subject: str, pattern: str) -> bool:
    """nats-server's subject matching for one subscription subject."""
    s = subject.split(".")
    p = pattern.split(".")
    for i, tok in enumerate(p):
        if tok == ">":
            return len(s) > i  # one or more tokens left
        if i >= len(s):
            return False
        if tok != "*" and tok != s[i]:
            return False
    return len(s) == len(p)


def trie_matches(topic: str, topic_filter: str) -> bool:
    trie = TopicTrie()
    trie.insert(topic_filter, "k", 1)
    return bool(trie.match(topic))


# Levels that stress the encoding: separators, NATS wildcards, escapes, the escape character, UTF-8.
_LEVEL = st.one_of(
    st.sampled_from(["a", "b", "", "$", "$SYS", "$a", ".", "a.b", "*", ">", "=", "=2E", "=3D", " ", "é", "€", "a b"]),
    st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00/+#"), max_size=4),
)
_TOPICS = st.lists(_LEVEL, min_size=1, max_size=5).map("/".join)
_FILTER_LEVEL = st.one_of(_LEVEL, st.just("+"))
_FILTERS = st.builds(
    lambda levels, hash_: "/".join([*levels, "#"] if hash_ else levels) or "#",
    st.lists(_FILTER_LEVEL, min_size=0, max_size=4),
    st.booleans(),
)


@settings(max_examples=2000, deadline=None)
@given(topic=_TOPICS)
def test_roundtrip_and_safe_tokens(topic: str) -> None:
    subject = encode_topic(topic)
    assert decode_topic(subject) == topic
    tokens = subject.split(".")
    assert tokens[:2] == ["mqhook", "m"]
    assert len(tokens) == 3 + topic.count("/") + 1  # prefix (2), kind, one token per level
    for tok in tokens:
        assert _TOKEN.match(tok) and tok not in ("*", ">"), (topic, subject)


@settings(max_examples=3000, deadline=None)
@given(topic=_TOPICS, topic_filter=_FILTERS)
def test_nats_matching_equals_trie(topic: str, topic_filter: str) -> None:
    subjects = filter_subjects(topic_filter)
    hits = [p for p in subjects if nats_match(encode_topic(topic), p)]
    assert len(hits) <= 1, "a message must match at most one subject of a filter (one copy per filter)"
    assert bool(hits) == trie_matches(topic, topic_filter), (topic, topic_filter, subjects)


@settings(max_examples=1000, deadline=None)
@given(a=_TOPICS, b=_TOPICS)
def test_injective(a: str, b: str) -> None:
    assert (encode_topic(a) == encode_topic(b)) == (a == b)


@pytest.mark.parametrize(
    ("topic", "topic_filter", "expected"),
    [
        ("$SYS/x", "#", False),
        ("$SYS/x", "+/x", False),
        ("$SYS/x", "$SYS/#", True),
        ("$SYS", "$SYS/#", True),
        ("$SYS/x", "$SYS/+", True),
        ("a/*/b", "a/x/b", False),  # nats-server's MQTT gateway would deliver this one
        ("a/x/b", "a/*/b", False),
        ("a/*/b", "a/*/b", True),
        ("a.b", "a/b", False),
        ("a/b", "a.b", False),
        ("a", "a/#", True),
        ("a/", "a/#", True),
        ("a//b", "a/+/b", True),
        ("/", "+/+", True),
        ("a/=", "a/", False),
        ("a/", "a/=", False),
        ("x", "#", True),
    ],
)
def test_examples(topic: str, topic_filter: str, expected: bool) -> None:
    assert trie_matches(topic, topic_filter) is expected
    assert any(nats_match(encode_topic(topic), p) for p in filter_subjects(topic_filter)) is expected


def test_queue_name_depends_on_filter() -> None:
    assert queue_name("g", "a/#") != queue_name("g", "a/b")
    assert queue_name("g", "a/#") == queue_name("g", "a/#")
    assert queue_name("g.x", "a") != queue_name("g", "a")
    assert all(_TOKEN.match(part) for part in queue_name("g.* >", "a").split("."))
