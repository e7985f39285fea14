"""Retained messages cluster-wide without NATS: the bucket's keys (mqhook.cluster.retained), valid
NATS KV keys, one per topic name, and back; and the broker's side (apply_retained, restore_retained
while clustered)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from nats.js.kv import _is_key_valid

from mqhook.broker.message import Message
from mqhook.cluster.retained import key_topic, topic_key

from .brokerkit import make_broker

HOSTILE = ["a", "a/b", "a.b", "*", ">", "a/*/>", "=", "=2E", "a b", "é/€", "/", "//", "a//b", "a/", "$SYS/x", "$", "\t"]


@pytest.mark.parametrize("topic", HOSTILE)
def test_hostile_topics_are_valid_keys_and_round_trip(topic):
    key = topic_key(topic)
    assert _is_key_valid(key), key
    assert key_topic(key) == topic


def test_distinct_topics_distinct_keys():
    assert len({topic_key(t) for t in HOSTILE}) == len(HOSTILE)


@given(st.lists(st.text(max_size=6), min_size=1, max_size=5))
def test_any_topic_round_trips(levels):
    topic = "/".join(levels)
    key = topic_key(topic)
    assert _is_key_valid(key), key
    assert key_topic(key) == topic


# -- the broker's side: Broker.apply_retained and restore_retained while clustered ---------------


class Link:
    """A ClusterLink that records nothing (the broker only needs one to be set)."""

    def interest_added(self, topic_filter: str) -> None:
        pass

    def interest_removed(self, topic_filter: str) -> None:
        pass

    def published(self, msg: Message) -> None:
        pass


def retained(topic: str, payload: bytes) -> Message:
    return Message(topic, payload, 1, True, {}, "other-node-client")


def test_apply_retained_sets_and_clears_within_the_local_limits_and_journals() -> None:
    broker, _ = make_broker(durable_sessions=True, max_retained_messages=2)
    journal = broker.journal
    assert journal is not None
    broker.apply_retained("a", retained("a", b"1"))
    broker.apply_retained("b", retained("b", b"2"))
    broker.apply_retained("c", retained("c", b"3"))  # over the limit: refused here, counted
    assert sorted(m.topic for m in broker.retained_for("#")) == ["a", "b"]
    assert broker.stats.limits["max_retained_messages"] == 1
    assert broker.retained_bytes == 4
    assert {o[1] for o in journal.collect() if o[0] == "retain"} == {"a", "b"}
    broker.apply_retained("a", None)
    broker.apply_retained("zz", None)  # nothing retained there: nothing to do
    assert [m.topic for m in broker.retained_for("#")] == ["b"] and broker.retained_bytes == 2
    assert journal.collect() == [("unretain", "a")]


def test_restore_while_clustered_keeps_what_the_cluster_gave_and_rewrites_the_disk() -> None:
    broker, _ = make_broker(durable_sessions=True)
    journal = broker.journal
    assert journal is not None
    broker.cluster = Link()
    broker.apply_retained("changed", retained("changed", b"new"))  # the KV, loaded first
    journal.collect()
    broker.restore_retained(retained("changed", b"old"))  # then the disk
    broker.restore_retained(retained("cleared", b"old"))
    assert {m.topic: m.payload for m in broker.retained_for("#")} == {"changed": b"new"}
    ops = {o[1]: o for o in journal.collect()}
    assert ops["cleared"] == ("unretain", "cleared")
    assert ops["changed"][0] == "retain" and ops["changed"][2].payload == b"new"


def test_restore_without_a_cluster_puts_back_the_disk() -> None:
    broker, _ = make_broker(durable_sessions=True)
    broker.restore_retained(retained("t", b"disk"))
    assert [m.payload for m in broker.retained_for("t")] == [b"disk"]
