"""Property test of topic matching through the real broker against a brute-force matcher.

Each example subscribes one raw v5 client to a few random filters, each with its own
Subscription Identifier, publishes random topics, and reads which identifiers each delivery
carries: the union per topic must be exactly the set of filters that match it.
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .rawmqtt import P_SUBSCRIPTION_ID, RawClient, publish_packet

LEVELS = ["a", "b", "", "ü"]
FIRST_LEVELS = [*LEVELS, "$s"]
END_TOPIC = "zz-end"
_counter = itertools.count()


def matches(topic_filter: str, topic: str) -> bool:
    """Reference semantics (MQTT 5 section 4.7), written independently of the broker."""
    f, t = topic_filter.split("/"), topic.split("/")
    if topic.startswith("$") and f[0] in ("+", "#"):
        return False
    for i, level in enumerate(f):
        if level == "#":
            return True  # also matches the parent level: 'a/#' matches 'a'
        if i >= len(t) or (level != "+" and level != t[i]):
            return False
    return len(f) == len(t)


def _topics() -> st.SearchStrategy[str]:
    rest = st.lists(st.sampled_from(LEVELS), min_size=0, max_size=3)
    return st.builds(lambda first, more: "/".join([first, *more]), st.sampled_from(FIRST_LEVELS), rest).filter(
        lambda t: t != "" and t != END_TOPIC
    )


def _filters() -> st.SearchStrategy[str]:
    level = st.sampled_from([*LEVELS, "+"])
    first = st.sampled_from([*FIRST_LEVELS, "+"])

    def build(head: str, body: list[str], hash_: bool) -> str:
        levels = [head, *body]
        if hash_:
            levels.append("#")
        return "/".join(levels)

    plain = st.builds(build, first, st.lists(level, max_size=3), st.booleans())
    return st.one_of(plain, st.just("#")).filter(lambda f: f != "")


@pytest.fixture
def matcher_broker(broker):
    # a broker of its own: filters like '#' and '+' must only see this test's traffic
    return broker()


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    filters=st.lists(_filters(), min_size=1, max_size=5, unique=True),
    topics=st.lists(_topics(), min_size=1, max_size=6, unique=True),
)
def test_matching_agrees_with_reference(matcher_broker, filters, topics):
    n = next(_counter)
    sub = RawClient(matcher_broker.host, matcher_broker.mqtt_port)
    pub = RawClient(matcher_broker.host, matcher_broker.mqtt_port)
    try:
        assert sub.connect(f"prop-sub-{n}").rc == 0
        ids = {}
        for i, flt in enumerate(filters, start=1):
            assert sub.subscribe(flt, qos=0, pid=i, properties=[(P_SUBSCRIPTION_ID, i)]) == [0], flt
            ids[i] = flt
        end_id = len(filters) + 1
        sub.subscribe(END_TOPIC, qos=0, pid=end_id, properties=[(P_SUBSCRIPTION_ID, end_id)])
        assert pub.connect(f"prop-pub-{n}").rc == 0
        for topic in topics:
            pub.send(publish_packet(topic, topic.encode()))
        pub.send(publish_packet(END_TOPIC, b""))
        got: dict[str, set[int]] = {}
        while True:
            m = sub.recv_publish()
            if m.topic == END_TOPIC:
                break
            assert m.payload == m.topic.encode()
            got.setdefault(m.topic, set()).update(m.props.getall(P_SUBSCRIPTION_ID))
        expected = {t: {i for i, f in ids.items() if matches(f, t)} for t in topics}
        expected = {t: s for t, s in expected.items() if s}
        assert got == expected, f"filters={filters} topics={topics}"
    finally:
        sub.close()
        pub.close()


@pytest.mark.parametrize(
    ("topic_filter", "topic", "expected"),
    [
        ("a/#", "a", True),
        ("#", "$s/a", False),
        ("+/a", "$s/a", False),
        ("$s/#", "$s/a", True),
        ("+", "/", False),
        ("+/+", "/", True),
        ("a/+", "a/", True),
    ],
)
def test_reference_matcher_itself(topic_filter, topic, expected):
    assert matches(topic_filter, topic) is expected
