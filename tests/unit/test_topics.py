"""Topic name / filter validation, shared-subscription parsing, and the brute-force oracle the tries are held to."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mqhook.errors import ProtocolError
from mqhook.mqtt.topics import parse_shared, validate_topic_filter, validate_topic_name

from .oracle import matches


@pytest.mark.parametrize("name", ["a", "a/b", "/", "//", "/a/", "$SYS/broker", "sport/tennis/player1", "é/ü", " "])
def test_valid_topic_names(name: str) -> None:
    validate_topic_name(name)


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("", "empty"),
        ("a/+", "wildcard"),
        ("+", "wildcard"),
        ("a/#", "wildcard"),
        ("a#b", "wildcard"),
        ("a\x00b", "U+0000"),
        ("x" * 65536, "65536 bytes exceeds 65535"),
        ("é" * 32768, "65536 bytes exceeds 65535"),
    ],
)
def test_invalid_topic_names(name: str, fragment: str) -> None:
    with pytest.raises(ProtocolError) as info:
        validate_topic_name(name)
    assert info.value.reason_code == 0x90
    assert fragment in str(info.value)


def test_topic_name_at_the_length_limit() -> None:
    validate_topic_name("x" * 65535)
    validate_topic_name("é" * 32767 + "x")


@pytest.mark.parametrize(
    "topic_filter",
    ["#", "+", "a", "a/#", "a/+", "+/+", "+/#", "a/+/b/#", "/", "/+", "+/", "$SYS/#", "$share/g/a", "a//b"],
)
def test_valid_topic_filters(topic_filter: str) -> None:
    validate_topic_filter(topic_filter)


@pytest.mark.parametrize(
    ("topic_filter", "message"),
    [
        ("a/#/b", "topic filter 'a/#/b': '#' must be the last level [MQTT-4.7.1-1]"),
        ("#/a", "topic filter '#/a': '#' must be the last level [MQTT-4.7.1-1]"),
        ("a#", "topic filter 'a#': '#' must occupy a whole level [MQTT-4.7.1-1]"),
        ("a/b#", "topic filter 'a/b#': '#' must occupy a whole level [MQTT-4.7.1-1]"),
        ("a+", "topic filter 'a+': '+' must occupy a whole level [MQTT-4.7.1-2]"),
        ("a/+b/c", "topic filter 'a/+b/c': '+' must occupy a whole level [MQTT-4.7.1-2]"),
        ("++", "topic filter '++': '+' must occupy a whole level [MQTT-4.7.1-2]"),
        ("", "topic filter is empty [MQTT-4.7.3-1]"),
        ("a\x00", "topic filter 'a\\x00' contains U+0000 [MQTT-4.7.3-2]"),
    ],
)
def test_invalid_topic_filters(topic_filter: str, message: str) -> None:
    with pytest.raises(ProtocolError) as info:
        validate_topic_filter(topic_filter)
    assert info.value.reason_code == 0x8F
    assert str(info.value) == message


def test_topic_filter_too_long() -> None:
    with pytest.raises(ProtocolError) as info:
        validate_topic_filter("a/" * 32768)
    assert info.value.reason_code == 0x8F
    assert "65536 bytes exceeds 65535" in str(info.value)


@pytest.mark.parametrize(
    ("topic_filter", "expected"),
    [
        ("$share/g/a/b", ("g", "a/b")),
        ("$share/group1/#", ("group1", "#")),
        ("$share/g/+/x", ("g", "+/x")),
        ("$share/g//", ("g", "/")),
        ("a/b", (None, "a/b")),
        ("$share", (None, "$share")),
        ("$SYS/#", (None, "$SYS/#")),
        ("share/g/a", (None, "share/g/a")),
    ],
)
def test_parse_shared(topic_filter: str, expected: tuple[str | None, str]) -> None:
    assert parse_shared(topic_filter) == expected


@pytest.mark.parametrize(
    ("topic_filter", "fragment"),
    [
        ("$share/", "share name is empty"),
        ("$share//a", "share name is empty"),
        ("$share/g", "a topic filter must follow"),
        ("$share/g/", "a topic filter must follow"),
        ("$share/g+/a", "contains '+' or '#'"),
        ("$share/#/a", "contains '+' or '#'"),
        ("$share/+", "contains '+' or '#'"),
    ],
)
def test_parse_shared_errors(topic_filter: str, fragment: str) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_shared(topic_filter)
    assert info.value.reason_code == 0x8F
    assert fragment in str(info.value)
    assert repr(topic_filter) in str(info.value)


@pytest.mark.parametrize(
    ("topic", "topic_filter", "expected"),
    [
        ("a/b", "a/b", True),
        ("a/b", "a/c", False),
        ("a/b", "a/+", True),
        ("a/b/c", "a/+", False),
        ("a", "a/+", False),
        ("a/b/c", "a/#", True),
        ("a", "a/#", True),
        ("a/b", "#", True),
        ("/", "#", True),
        ("/", "+/+", True),
        ("/a", "+/a", True),
        ("a", "+/+", False),
        ("a/b", "+/b/#", True),
        ("sport/tennis/player1", "sport/tennis/+", True),
        ("sport", "sport/#", True),
        ("sport/", "sport/+", True),
        ("$SYS/x", "#", False),
        ("$SYS/x", "+/x", False),
        ("$SYS/x", "$SYS/#", True),
        ("$SYS", "$SYS/#", True),
        ("$SYS/x", "$SYS/+", True),
        ("a/$x", "a/+", True),
        ("ab", "a", False),
        ("a", "ab", False),
    ],
)
def test_matches(topic: str, topic_filter: str, expected: bool) -> None:
    assert matches(topic, topic_filter) is expected


def _regex_matches(topic: str, topic_filter: str) -> bool:
    """An independent reference: the filter turned into a regular expression."""
    if topic.startswith("$") and topic_filter[:1] in "#+":
        return False
    pattern = "/".join("[^/]*" if level == "+" else re.escape(level) for level in topic_filter.split("/"))
    if topic_filter == "#":
        pattern = ".*"
    elif topic_filter.endswith("/#"):
        pattern = pattern[: -len("/\\#")] + "(/.*)?"
    return re.fullmatch(pattern, topic, re.DOTALL) is not None


_level = st.sampled_from(["a", "b", "", "$x", "cd"])
_topics = st.lists(_level, min_size=1, max_size=4).map("/".join).filter(bool)
_filter_levels = st.lists(st.sampled_from(["a", "b", "", "+", "$x", "cd"]), min_size=1, max_size=4)
_filters = st.tuples(_filter_levels, st.booleans()).map(lambda t: "/".join(t[0] + (["#"] if t[1] else []))).filter(bool)


@given(_topics, _filters)
def test_matches_agrees_with_a_regex(topic: str, topic_filter: str) -> None:
    validate_topic_filter(topic_filter)
    assert matches(topic, topic_filter) is _regex_matches(topic, topic_filter)
