"""The broker's cluster seam (Broker.cluster, route_remote), sans I/O: a recording link in place
of the NATS bridge."""

from __future__ import annotations

from typing import Any

from mqhook.broker.message import Message
from mqhook.mqtt import packets as P

from .brokerkit import Client, make_broker


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def interest_added(self, topic_filter: str) -> None:
        self.calls.append(("+", topic_filter))

    def interest_removed(self, topic_filter: str) -> None:
        self.calls.append(("-", topic_filter))

    def published(self, msg: Message) -> None:
        self.calls.append(("pub", msg.topic))


def publishes(client: Client) -> list[P.Publish]:
    return [p for p in client.link.take() if isinstance(p, P.Publish)]


def test_interest_publish_and_remote_delivery() -> None:
    broker, _ = make_broker()
    link = broker.cluster = Recorder()
    sub = Client(broker)
    sub.connect("s")
    sub.send(P.Subscribe(1, [P.Subscription("a/#", 1), P.Subscription("a/+", 0), P.Subscription("$share/g/a/b", 1)]))
    sub.link.take()
    assert link.calls == [("+", "a/#"), ("+", "a/+"), ("+", "$share/g/a/b")]
    pub = Client(broker)
    pub.connect("p")
    pub.send(P.Publish("a/b", b"x", 1, packet_id=1))
    assert ("pub", "a/b") in link.calls
    # locally: one copy per non-shared filter; the shared group's turn comes through the cluster
    assert sorted(p.qos for p in publishes(sub)) == [0, 1]
    remote = Message("a/b", b"r", 1, False, {}, "elsewhere")
    assert broker.route_remote(remote, "a/+") == 1  # only the subscriptions of that filter
    assert [(p.payload, p.qos) for p in publishes(sub)] == [(b"r", 0)]
    assert broker.route_remote(remote, "$share/g/a/b") == 1
    assert [(p.payload, p.qos) for p in publishes(sub)] == [(b"r", 1)]
    assert broker.route_remote(remote, "$share/h/a/b") == 0  # no such group here (any more)
    link.calls.clear()
    sub.send(P.Unsubscribe(2, ["a/+"]))
    sub.link.take()
    assert link.calls == [("-", "a/+")]
    assert broker.route_remote(remote, "a/+") == 0
    link.calls.clear()
    sub.send(P.Disconnect())
    assert sorted(link.calls) == [("-", "$share/g/a/b"), ("-", "a/#")]  # the session ends with its connection


def test_unclustered_broker_untouched() -> None:
    broker, _ = make_broker()
    assert broker.cluster is None
    sub = Client(broker)
    sub.connect("s")
    sub.send(P.Subscribe(1, [P.Subscription("$share/g/t", 1)]))
    sub.link.take()
    pub = Client(broker)
    pub.connect("p")
    pub.send(P.Publish("t", b"x", 1, packet_id=1))
    assert [p.payload for p in publishes(sub)] == [b"x"]  # shared groups served by the trie as before
