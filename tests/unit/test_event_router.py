"""EventRouter: which hook points it fills, topic routing, zero cost when nobody listens, one write
per payload encoding, and backpressure. The broker runs without sockets (``brokerkit``)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from mqhook.broker.broker import Broker
from mqhook.broker.hooks import HOOKPOINTS
from mqhook.broker.message import Message
from mqhook.errors import ConfigError
from mqhook.events import EVENT_NAMES, EventRouter, catalogue, router
from mqhook.matcher import TopicTrie
from mqhook.mqtt import packets as P

from .brokerkit import Client, make_broker
from .test_events import RecordingSink

NODE = "mqhook@test"


class FakeSink(RecordingSink):
    """Saturated once it holds ``high_water`` events; ``drain()`` empties it and fires relief callbacks."""

    def __init__(self, *args: Any, high_water: int | None = None, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.high_water = high_water
        self.relief: list[Callable[[], None]] = []

    @property
    def saturated(self) -> bool:
        return self.high_water is not None and len(self.got) >= self.high_water

    def on_relief(self, callback: Callable[[], None]) -> None:
        self.relief.append(callback)

    def drain(self) -> None:
        self.got.clear()
        callbacks, self.relief = self.relief, []
        for callback in callbacks:
            callback()


@pytest.fixture
def builds(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, int]]:
    """Counts, per event name, the calls of its writer or builder (the table's functions, wrapped)."""
    counts = dict.fromkeys(EVENT_NAMES, 0)
    rows = []
    for row in catalogue.EVENTS:
        field = "write" if isinstance(row, catalogue.MessageEvent) else "build"
        real = getattr(row, field)

        def counting(*args: Any, _real: Any = real, _name: str = row.name) -> Any:
            counts[_name] += 1
            return _real(*args)

        rows.append(row._replace(**{field: counting}))
    monkeypatch.setattr(router, "EVENTS", tuple(rows))
    yield counts


def msg(topic: str, payload: bytes = b"p") -> Message:
    return Message(topic, payload, 0, False, {}, "pub")


def routed(*sinks: Any) -> tuple[Broker, EventRouter]:
    broker, _ = make_broker()
    return broker, EventRouter(NODE, broker.hooks, broker.backpressure, list(sinks))


def filled(broker: Broker) -> set[str]:
    """The events whose hook point has a listener."""
    return {name for name, slot in HOOKPOINTS.items() if getattr(broker.hooks, slot) is not None}


def publish(broker: Broker, m: Message) -> None:
    """What the broker's message.publish call site does."""
    fire = broker.hooks.message_publish
    if fire is not None:
        fire(m)


def connected(broker: Broker, client_id: str = "c") -> Client:
    c = Client(broker)
    c.connect(client_id)
    return c


# -- which hook points are filled, and the zero-cost rule -----------------------------------------


@pytest.mark.parametrize("event", EVENT_NAMES)
def test_only_the_hook_point_of_a_wanted_event_is_filled(event: str) -> None:
    broker, _ = routed(RecordingSink(events=[event]))
    assert filled(broker) == {event}


def test_no_consumers_fill_nothing() -> None:
    broker, _ = routed()
    assert filled(broker) == set()
    assert broker.backpressure.active is False


def test_a_consumer_wanting_only_connected_costs_nothing_on_publish(builds: dict[str, int]) -> None:
    sink = RecordingSink(events=["client.connected"])
    broker, _ = routed(sink)
    c = connected(broker)
    c.send(P.Subscribe(1, [P.Subscription("t", 1)]))
    c.send(P.Publish("t", b"x", 1, packet_id=1))
    c.send(P.Publish("none", b"x", 0))
    assert [type(e).__name__ for e in sink.got] == ["ClientConnected"]
    assert builds == {name: int(name == "client.connected") for name in EVENT_NAMES}


def test_no_trie_lookup_for_an_event_nobody_wants(monkeypatch: pytest.MonkeyPatch) -> None:
    lookups: list[str] = []

    class SpyTrie:
        def __init__(self) -> None:
            self.trie = TopicTrie()

        def __len__(self) -> int:
            return len(self.trie)

        def insert(self, *args: Any) -> bool:
            return self.trie.insert(*args)

        def match(self, topic: str) -> Any:
            lookups.append(topic)
            return self.trie.match(topic)

    monkeypatch.setattr(router, "TopicTrie", SpyTrie)
    broker, _ = routed(RecordingSink(events=["message.delivered"], topics=("t", "u/+")))
    assert broker.hooks.message_publish is None and broker.hooks.message_dropped is None
    c = connected(broker)
    c.send(P.Publish("t", b"x", 0))  # no subscriber: no delivery, so no lookup at all
    assert lookups == []
    c.send(P.Subscribe(1, [P.Subscription("t", 0)]))
    c.send(P.Publish("t", b"x", 0))
    assert lookups == ["t"]  # the spy is live: the delivery was looked up
    lookups.clear()
    every = RecordingSink(events=["message.publish"])  # topics ("#",): no lookup needed
    broker, _ = routed(every)
    publish(broker, msg("t"))
    publish(broker, msg("$SYS/t"))
    assert lookups == [] and [e.topic for e in every.got] == ["t"]


def test_unmatched_topic_puts_nothing_and_builds_nothing(builds: dict[str, int]) -> None:
    sink = RecordingSink(events=["message.publish", "message.dropped"], topics=("a/#",))
    broker, _ = routed(sink)
    c = connected(broker)
    c.send(P.Publish("b", b"x", 0))
    assert sink.got == [] and builds["message.publish"] == 0 and builds["message.dropped"] == 0
    c.send(P.Publish("a", b"x", 0))  # 'a/#' matches its parent level [MQTT-4.7.1-2]
    c.send(P.Publish("a/x/y", b"x", 0))
    assert [e.topic for e in sink.got] == ["a", "a", "a/x/y", "a/x/y"]  # publish + dropped each
    assert builds["message.publish"] == 2 and builds["message.dropped"] == 2


# -- topic routing ------------------------------------------------------------------------------


def test_topic_filters_route_message_events() -> None:
    a = RecordingSink(events=["message.publish"], topics=("a/#",), name="a")
    plus = RecordingSink(events=["message.publish"], topics=("+/x",), name="plus")
    every = RecordingSink(events=["message.publish"], name="every")
    broker, _ = routed(a, plus, every)
    for topic in ("a/x", "b/x", "a/y", "c"):
        publish(broker, msg(topic))
    assert [e.topic for e in a.got] == ["a/x", "a/y"]
    assert [e.topic for e in plus.got] == ["a/x", "b/x"]
    assert [e.topic for e in every.got] == ["a/x", "b/x", "a/y", "c"]


def test_dollar_topics_are_not_matched_by_leading_wildcards() -> None:
    every = RecordingSink(events=["message.publish"], topics=("#",))
    plus = RecordingSink(events=["message.publish"], topics=("+/x",))
    sys = RecordingSink(events=["message.publish"], topics=("$SYS/#",))
    broker, _ = routed(every, plus, sys)
    publish(broker, msg("$SYS/x"))
    assert every.got == [] and plus.got == []  # like EMQX's FROM "#" [MQTT-4.7.2-1]
    assert [e.topic for e in sys.got] == ["$SYS/x"]


def test_overlapping_filters_give_one_event_per_consumer() -> None:
    sink = RecordingSink(events=["message.publish"], topics=("a/#", "a/b", "+/b"))
    broker, _ = routed(sink)
    publish(broker, msg("a/b"))
    assert len(sink.got) == 1


def test_filters_apply_to_every_message_event() -> None:
    events = ["message.delivered", "message.acked", "message.dropped", "delivery.dropped"]
    sink = RecordingSink(events=events, topics=("keep/#",))
    broker, _ = routed(sink)
    sub = connected(broker, "sub")
    sub.send(P.Subscribe(1, [P.Subscription("#", 1, no_local=True)]))
    for n, topic in enumerate(("keep/1", "skip/1"), start=1):
        sub.send(P.Publish(topic, b"x", 1, packet_id=n))  # no_local: delivery.dropped + message.dropped
    other = connected(broker, "other")
    other.send(P.Publish("keep/2", b"x", 1, packet_id=1))
    other.send(P.Publish("skip/2", b"x", 1, packet_id=2))
    for packet in sub.link.take():
        if isinstance(packet, P.Publish):
            sub.send(P.Puback(packet.packet_id))
    assert {e.topic for e in sink.got} == {"keep/1", "keep/2"}
    assert sorted(sink.names()) == sorted(events)


def test_one_write_per_payload_encoding(builds: dict[str, int]) -> None:
    plain1 = RecordingSink(events=["message.publish"], payload_encoding="plain")
    plain2 = RecordingSink(events=["message.publish"], payload_encoding="plain", topics=("t",))
    b64 = RecordingSink(events=["message.publish"], payload_encoding="base64")
    broker, _ = routed(plain1, plain2, b64)
    publish(broker, msg("t", b"\xff"))
    assert builds["message.publish"] == 2
    assert plain1.raws[0] is plain2.raws[0] and plain1.got[0].payload == "\ufffd"  # the same bytes
    assert b64.got[0].payload == "/w==" and b64.got[0].id == plain1.got[0].id


def test_client_events_ignore_topics_and_are_built_once(builds: dict[str, int]) -> None:
    sinks = [RecordingSink(events=["client.connected"], topics=("nothing/matches",)) for _ in range(3)]
    broker, _ = routed(*sinks)
    connected(broker)
    assert builds["client.connected"] == 1
    assert sinks[0].raws[0] is sinks[1].raws[0] is sinks[2].raws[0]


def test_set_consumers_refills_the_hook_points() -> None:
    first = RecordingSink(events=["message.publish"])
    broker, events = routed(first)
    second = RecordingSink(events=["client.connected", "session.subscribed"])
    events.set_consumers([second])
    assert filled(broker) == {"client.connected", "session.subscribed"}
    c = connected(broker)
    c.send(P.Publish("t", b"x", 0))
    assert first.got == [] and second.names() == ["client.connected"]
    events.set_consumers([])
    assert filled(broker) == set()


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"events": ["message.publish", "client.ping"]}, "unknown event name"),
        ({"payload_encoding": "hex"}, "payload_encoding 'hex'"),
        ({"topics": ("a/#/b",)}, "topic filter 'a/#/b'"),
    ],
)
def test_a_bad_consumer_is_refused_and_changes_nothing(kw: dict[str, Any], message: str) -> None:
    good = RecordingSink(events=["client.connected"])
    broker, events = routed(good)
    with pytest.raises(ConfigError, match=message):
        events.set_consumers([RecordingSink(name="bad", **kw)])
    assert events.consumers == (good,) and filled(broker) == {"client.connected"}


def test_a_failing_consumer_does_not_stop_the_others(caplog: pytest.LogCaptureFixture) -> None:
    class Broken(RecordingSink):
        def put(self, raw: bytes, clientid: str) -> bool:
            raise RuntimeError("boom")

    good = RecordingSink(events=["message.publish"])
    broker, _ = routed(Broken(events=["message.publish"], name="broken"), good)
    with caplog.at_level(logging.ERROR, logger="mqhook.events"):
        publish(broker, msg("t"))
    assert len(good.got) == 1 and "broken" in caplog.text


def test_a_failing_consumer_alone_on_every_topic_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    class Broken(RecordingSink):
        def put(self, raw: bytes, clientid: str) -> bool:
            raise RuntimeError("boom")

    broker, _ = routed(Broken(events=["message.publish"], name="alone"))  # the fast path of one consumer on '#'
    c = connected(broker)
    with caplog.at_level(logging.ERROR, logger="mqhook.events"):
        c.send(P.Publish("t", b"x", 1, packet_id=1))
    assert "alone" in caplog.text
    (ack,) = c.link.take()
    assert isinstance(ack, P.Puback)  # the publisher is served anyway


# -- backpressure -------------------------------------------------------------------------------


def test_on_relief_without_pressure_calls_at_once() -> None:
    broker, _ = routed(FakeSink(events=["message.publish"], high_water=10))
    calls: list[int] = []
    broker.backpressure.on_relief(lambda: calls.append(1))
    assert calls == [1] and broker.backpressure.active is False


@pytest.mark.parametrize("topics", [("#",), ("t", "u")], ids=["one-on-every-topic", "by-filter"])
def test_backpressure_follows_a_saturated_consumer(topics: tuple[str, ...]) -> None:
    sink = FakeSink(events=["message.publish"], topics=topics, high_water=2)
    broker, _ = routed(sink)
    bp = broker.backpressure
    publish(broker, msg("t"))
    assert bp.active is False
    publish(broker, msg("t"))
    assert bp.active is True and len(sink.relief) == 1
    publish(broker, msg("t"))
    assert len(sink.relief) == 1  # one relief request per saturation
    calls: list[int] = []
    bp.on_relief(lambda: calls.append(1))
    assert calls == []
    sink.drain()
    assert calls == [1] and bp.active is False
    sink.drain()
    assert calls == [1]  # once only


def test_relief_waits_for_every_saturated_consumer() -> None:
    a = FakeSink(events=["message.publish"], high_water=1, name="a")
    b = FakeSink(events=["client.connected"], high_water=1, name="b")
    broker, _ = routed(a, b)
    connected(broker)  # b saturated
    publish(broker, msg("t"))  # a saturated
    calls: list[str] = []
    broker.backpressure.on_relief(lambda: calls.append("x"))
    a.drain()
    assert calls == [] and broker.backpressure.active is True
    b.drain()
    assert calls == ["x"] and broker.backpressure.active is False


def test_relief_waits_only_for_consumers_saturated_when_asked() -> None:
    a = FakeSink(events=["message.publish"], topics=("a",), high_water=1, name="a")
    b = FakeSink(events=["message.publish"], topics=("b",), high_water=1, name="b")
    broker, _ = routed(a, b)
    bp = broker.backpressure
    publish(broker, msg("a"))
    calls: list[str] = []
    bp.on_relief(lambda: calls.append("x"))
    publish(broker, msg("b"))  # b saturates after the callback was registered
    a.drain()
    assert calls == ["x"] and bp.active is True  # b still holds publishers that ask from now on
    late: list[str] = []
    bp.on_relief(lambda: late.append("y"))
    b.drain()
    assert late == ["y"] and bp.active is False


def test_removing_a_saturated_consumer_releases_publishers() -> None:
    sink = FakeSink(events=["message.publish"], high_water=1)
    broker, events = routed(sink)
    publish(broker, msg("t"))
    calls: list[int] = []
    broker.backpressure.on_relief(lambda: calls.append(1))
    events.set_consumers([])
    assert calls == [1] and broker.backpressure.active is False
    sink.drain()  # its late relief changes nothing
    assert calls == [1] and broker.backpressure.active is False


def test_a_publisher_feeding_a_saturated_consumer_is_held_until_relief() -> None:
    sink = FakeSink(events=["message.publish"], high_water=1)
    broker, _ = routed(sink)
    c = connected(broker)
    c.send(P.Publish("t", b"x", 0))
    assert broker.backpressure.active is True and c.conn.holding
    c.send(P.Publish("t", b"held", 1, packet_id=5))
    assert c.link.take() == []  # held: not routed, not acknowledged yet
    other = connected(broker, "other")
    other.send(P.Pingreq())
    assert [type(x) for x in other.link.take()] == [P.Pingresp]  # a connection that did not publish reads on
    sink.drain()
    assert [type(x) for x in c.link.take()] == [P.Puback]  # the held PUBLISH was handled on relief ...
    assert c.conn.holding and broker.backpressure.active is True  # ... and filled the consumer again
    sink.drain()
    assert not c.conn.holding and broker.backpressure.active is False
