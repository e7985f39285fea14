"""v5 features towards subscribers (issue 10, "Also"): outbound topic aliases, the Server Keep
Alive setting, and one copy carrying every matching Subscription Identifier."""

from __future__ import annotations

from typing import Any

import pytest

from mqhook.mqtt import packets as P

from .brokerkit import Client, make_broker

EPS = 2**-10


def connack_and(c: Client, client_id: str, **props: Any) -> tuple[P.Connack, list[Any]]:
    c.send(P.Connect(client_id, proto_level=5, properties=props))
    got = c.link.take()
    assert isinstance(got[0], P.Connack)
    return got[0], got[1:]


def publishes(c: Client) -> list[P.Publish]:
    return [x for x in c.link.take() if isinstance(x, P.Publish)]


# -- outbound topic aliases -------------------------------------------------------------------


def alias_subscriber(broker: Any, alias_max: int, **connect_props: Any) -> Client:
    sub = Client(broker)
    connack_and(sub, "sub", **({"Topic-Alias-Maximum": alias_max} if alias_max else {}), **connect_props)
    sub.send(P.Subscribe(1, [P.Subscription("t/#", 0)]))
    sub.link.take()
    return sub


def test_topics_are_sent_once_then_by_their_alias_up_to_the_clients_maximum() -> None:
    broker, _ = make_broker()
    sub = alias_subscriber(broker, alias_max=2)
    pub = Client(broker)
    pub.connect("pub")
    for topic in ("t/a", "t/a", "t/b", "t/c", "t/b", "t/c"):
        pub.send(P.Publish(topic, topic.encode(), 0))
    got = [(m.topic, m.properties.get("Topic-Alias"), m.payload) for m in publishes(sub)]
    assert got == [
        ("t/a", 1, b"t/a"),  # the topic and the alias that will stand for it
        ("", 1, b"t/a"),  # then the alias alone
        ("t/b", 2, b"t/b"),
        ("t/c", None, b"t/c"),  # the client allows two: later topics go whole
        ("", 2, b"t/b"),
        ("t/c", None, b"t/c"),
    ]


@pytest.mark.parametrize(("client_max", "setting", "expected"), [(0, 64, None), (10, 0, None), (10, 1, 1)])
def test_aliases_only_when_both_sides_allow_them(client_max: int, setting: int, expected: Any) -> None:
    broker, _ = make_broker(outbound_topic_aliases=setting)
    sub = alias_subscriber(broker, alias_max=client_max)
    pub = Client(broker)
    pub.connect("pub")
    pub.send(P.Publish("t/a", b"x", 0))
    pub.send(P.Publish("t/a", b"x", 0))
    second = publishes(sub)[1]
    assert second.properties.get("Topic-Alias") == expected and (second.topic == "") == (expected is not None)


def test_an_alias_is_not_given_with_a_publish_that_was_not_sent() -> None:
    broker, _ = make_broker()
    sub = alias_subscriber(broker, alias_max=5, **{"Maximum-Packet-Size": 64})
    pub = Client(broker)
    pub.connect("pub")
    pub.send(P.Publish("t/a", b"x" * 100, 0))  # over the client's Maximum-Packet-Size: not sent
    pub.send(P.Publish("t/a", b"small", 0))
    (m,) = publishes(sub)
    assert (m.topic, m.properties.get("Topic-Alias")) == ("t/a", 1)  # the client had never seen alias 1
    assert broker.stats.deliveries_dropped["too_large"] == 1


def test_a_311_subscriber_gets_whole_topics() -> None:
    broker, _ = make_broker()
    sub = Client(broker, level=4)
    sub.connect("old")
    sub.send(P.Subscribe(1, [P.Subscription("t/#", 0)]))
    sub.link.take()
    pub = Client(broker)
    pub.connect("pub")
    pub.send(P.Publish("t/a", b"1", 0))
    pub.send(P.Publish("t/a", b"2", 0))
    assert [m.topic for m in publishes(sub)] == ["t/a", "t/a"]


# -- Server Keep Alive --------------------------------------------------------------------------


@pytest.mark.parametrize("asked", [0, 5, 600])
def test_server_keepalive_is_imposed_on_v5_clients(asked: int) -> None:
    broker, clock = make_broker(server_keepalive=20)
    c = Client(broker)
    c.send(P.Connect("ka", proto_level=5, keepalive=asked))
    ack = c.link.take()[0]
    assert isinstance(ack, P.Connack) and ack.properties["Server-Keep-Alive"] == 20 and c.conn.keepalive == 20
    clock.advance(30 - EPS)
    assert not c.link.closed
    clock.advance(EPS)  # 1.5 x 20 s of silence
    assert c.link.closed


def test_server_keepalive_leaves_311_clients_their_own() -> None:
    broker, clock = make_broker(server_keepalive=20)
    c = Client(broker, level=4)
    c.send(P.Connect("old", proto_level=4, keepalive=0))
    c.link.take()
    assert c.conn.keepalive == 0
    clock.advance(3600)
    assert not c.link.closed


# -- one copy for overlapping subscriptions ------------------------------------------------------


def overlapping(broker: Any) -> Client:
    sub = Client(broker)
    sub.connect("sub")
    sub.send(P.Subscribe(1, [P.Subscription("a/#", 0)], {"Subscription-Identifier": 1}))
    sub.send(P.Subscribe(2, [P.Subscription("a/b", 1)], {"Subscription-Identifier": 2}))
    sub.send(P.Subscribe(3, [P.Subscription("+/b", 1)]))  # no identifier
    sub.link.take()
    return sub


def test_single_copy_carries_every_identifier_at_the_highest_qos() -> None:
    broker, _ = make_broker(overlapping_subscriptions="single_copy")
    sub = overlapping(broker)
    pub = Client(broker)
    pub.connect("pub")
    pub.send(P.Publish("a/b", b"x", 1, packet_id=1))
    (m,) = publishes(sub)
    assert m.qos == 1 and sorted(m.properties["Subscription-Identifier"]) == [1, 2]


def test_copy_each_sends_one_copy_per_matching_subscription() -> None:
    broker, _ = make_broker()  # the default
    sub = overlapping(broker)
    pub = Client(broker)
    pub.connect("pub")
    pub.send(P.Publish("a/b", b"x", 1, packet_id=1))
    copies = sorted((m.qos, tuple(m.properties.get("Subscription-Identifier", ()))) for m in publishes(sub))
    assert copies == [(0, (1,)), (1, ()), (1, (2,))]
