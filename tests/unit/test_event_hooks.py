"""EventHooks: want_* flags, topic routing, zero cost when nobody listens, one build per encoding,
pressure and on_relief. The broker runs without sockets (``brokerkit``)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from mqhook import hooks as H
from mqhook.broker.broker import Broker
from mqhook.broker.message import Message
from mqhook.events import EventHooks, MessageWriter
from mqhook.events import build as B
from mqhook.events import hooks as event_hooks
from mqhook.matcher import TopicTrie
from mqhook.mqtt import packets as P

from .brokerkit import Client, make_broker
from .test_events import RecordingSink

NODE = "mqhook@test"
# What EventHooks calls to make each event: a MessageWriter method, or a builder in ``build``.
WRITERS = {
    "message_publish": "publish",
    "message_dropped": "dropped",
    "message_delivered": "delivered",
    "message_acked": "acked",
    "delivery_dropped": "delivery_dropped",
}
BUILDERS = [
    "client_connected",
    "client_connack",
    "client_disconnected",
    "check_authz_complete",
    "check_authn_complete",
    "session_subscribed",
    "session_unsubscribed",
]


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
    """Counts calls of every event writer and builder (what EventHooks calls to make an event)."""
    counts = dict.fromkeys([*WRITERS, *BUILDERS], 0)
    targets = [(MessageWriter, method, name) for name, method in WRITERS.items()]
    for owner, attr, name in [*targets, *((B, name, name) for name in BUILDERS)]:
        real = getattr(owner, attr)

        def counting(*args: Any, _real: Any = real, _name: str = name) -> Any:
            counts[_name] += 1
            return _real(*args)

        monkeypatch.setattr(owner, attr, counting)
    yield counts


def msg(topic: str, payload: bytes = b"p") -> Message:
    return Message(topic, payload, 0, False, {}, "pub")


def broker_with(*sinks: Any) -> tuple[Broker, EventHooks]:
    broker, _ = make_broker()
    hooks = EventHooks(NODE, list(sinks))
    broker.hooks = hooks
    return broker, hooks


def connected(broker: Broker, client_id: str = "c") -> Client:
    c = Client(broker)
    c.connect(client_id)
    return c


# -- want flags and the zero-cost rule ----------------------------------------------------------


@pytest.mark.parametrize("event", H.ALL_EVENTS)
def test_a_flag_is_set_only_for_wanted_events(event: str) -> None:
    hooks = EventHooks(NODE, [RecordingSink(events=[event])])
    flags = {flag: getattr(hooks, flag) for flag in event_hooks.WANT_FLAGS.values()}
    assert flags == {flag: flag == event_hooks.WANT_FLAGS[event] for flag in flags}


def test_no_sinks_want_nothing() -> None:
    hooks = EventHooks(NODE, [])
    assert not any(getattr(hooks, flag) for flag in event_hooks.WANT_FLAGS.values())
    assert set(event_hooks.WANT_FLAGS) == set(H.ALL_EVENTS)
    assert hooks.pressure is False


def test_sink_wanting_only_connected_costs_nothing_on_publish(builds: dict[str, int]) -> None:
    sink = RecordingSink(events=["client.connected"])
    broker, hooks = broker_with(sink)
    assert hooks.want_connected and not hooks.want_publish and not hooks.want_delivered
    c = connected(broker)
    c.send(P.Subscribe(1, [P.Subscription("t", 1)]))
    c.send(P.Publish("t", b"x", 1, packet_id=1))
    c.send(P.Publish("none", b"x", 0))
    assert [type(e).__name__ for e in sink.got] == ["ClientConnected"]
    assert builds == {name: int(name == "client_connected") for name in [*WRITERS, *BUILDERS]}


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

    monkeypatch.setattr(event_hooks, "TopicTrie", SpyTrie)
    hooks = EventHooks(NODE, [RecordingSink(events=["message.delivered"], topics=("t", "u/+"))])
    hooks.message_publish(msg("t"))  # even if a call site ignored want_publish
    hooks.message_dropped(msg("t"), "no_subscribers")
    assert lookups == []
    broker, _ = make_broker()
    broker.hooks = hooks
    c = connected(broker)
    c.send(P.Publish("t", b"x", 0))  # no subscriber: no delivery, so no lookup at all
    assert lookups == []
    c.send(P.Subscribe(1, [P.Subscription("t", 0)]))
    c.send(P.Publish("t", b"x", 0))
    assert lookups == ["t"]  # the spy is live: the delivery was looked up
    lookups.clear()
    every = EventHooks(NODE, [RecordingSink(events=["message.publish"])])  # topics ("#",): no lookup needed
    every.message_publish(msg("t"))
    every.message_publish(msg("$SYS/t"))
    assert lookups == [] and [e.topic for e in every.sinks[0].got] == ["t"]  # type: ignore[attr-defined]


def test_unmatched_topic_puts_nothing_and_builds_nothing(builds: dict[str, int]) -> None:
    sink = RecordingSink(events=["message.publish", "message.dropped"], topics=("a/#",))
    broker, _ = broker_with(sink)
    c = connected(broker)
    c.send(P.Publish("b", b"x", 0))
    assert sink.got == [] and builds["message_publish"] == 0 and builds["message_dropped"] == 0
    c.send(P.Publish("a", b"x", 0))  # 'a/#' matches its parent level [MQTT-4.7.1-2]
    c.send(P.Publish("a/x/y", b"x", 0))
    assert [e.topic for e in sink.got] == ["a", "a", "a/x/y", "a/x/y"]  # publish + dropped each
    assert builds["message_publish"] == 2 and builds["message_dropped"] == 2


# -- topic routing ------------------------------------------------------------------------------


def test_topic_filters_route_message_events() -> None:
    a = RecordingSink(events=["message.publish"], topics=("a/#",), name="a")
    plus = RecordingSink(events=["message.publish"], topics=("+/x",), name="plus")
    every = RecordingSink(events=["message.publish"], name="every")
    hooks = EventHooks(NODE, [a, plus, every])
    for topic in ("a/x", "b/x", "a/y", "c"):
        hooks.message_publish(msg(topic))
    assert [e.topic for e in a.got] == ["a/x", "a/y"]
    assert [e.topic for e in plus.got] == ["a/x", "b/x"]
    assert [e.topic for e in every.got] == ["a/x", "b/x", "a/y", "c"]


def test_dollar_topics_are_not_matched_by_leading_wildcards() -> None:
    every = RecordingSink(events=["message.publish"], topics=("#",))
    plus = RecordingSink(events=["message.publish"], topics=("+/x",))
    sys = RecordingSink(events=["message.publish"], topics=("$SYS/#",))
    hooks = EventHooks(NODE, [every, plus, sys])
    hooks.message_publish(msg("$SYS/x"))
    assert every.got == [] and plus.got == []  # like EMQX's FROM "#" [MQTT-4.7.2-1]
    assert [e.topic for e in sys.got] == ["$SYS/x"]


def test_overlapping_filters_give_one_event_per_sink() -> None:
    sink = RecordingSink(events=["message.publish"], topics=("a/#", "a/b", "+/b"))
    EventHooks(NODE, [sink]).message_publish(msg("a/b"))
    assert len(sink.got) == 1


def test_filters_apply_to_every_message_event() -> None:
    events = ["message.delivered", "message.acked", "message.dropped", "delivery.dropped"]
    sink = RecordingSink(events=events, topics=("keep/#",))
    broker, _ = broker_with(sink)
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


def test_one_build_per_payload_encoding(builds: dict[str, int]) -> None:
    plain1 = RecordingSink(events=["message.publish"], payload_encoding="plain")
    plain2 = RecordingSink(events=["message.publish"], payload_encoding="plain", topics=("t",))
    b64 = RecordingSink(events=["message.publish"], payload_encoding="base64")
    EventHooks(NODE, [plain1, plain2, b64]).message_publish(msg("t", b"\xff"))
    assert builds["message_publish"] == 2
    assert plain1.raws[0] is plain2.raws[0] and plain1.got[0].payload == "\ufffd"  # the same bytes
    assert b64.got[0].payload == "/w==" and b64.got[0].id == plain1.got[0].id


def test_client_events_ignore_topics_and_are_built_once(builds: dict[str, int]) -> None:
    sinks = [RecordingSink(events=["client.connected"], topics=("nothing/matches",)) for _ in range(3)]
    broker, _ = broker_with(*sinks)
    connected(broker)
    assert builds["client_connected"] == 1
    assert sinks[0].raws[0] is sinks[1].raws[0] is sinks[2].raws[0]


def test_set_sinks_rebuilds_indexes() -> None:
    first = RecordingSink(events=["message.publish"])
    broker, hooks = broker_with(first)
    second = RecordingSink(events=["client.connected", "session.subscribed"])
    hooks.set_sinks([second])
    assert not hooks.want_publish and hooks.want_connected and hooks.want_subscribed
    c = connected(broker)
    c.send(P.Publish("t", b"x", 0))
    assert first.got == [] and second.names() == ["client.connected"]
    hooks.set_sinks([])
    assert not hooks.want_connected


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"events": ["message.publish", "client.ping"]}, "unknown event name"),
        ({"payload_encoding": "hex"}, "payload_encoding 'hex'"),
        ({"topics": ("a/#/b",)}, "topic filter 'a/#/b'"),
    ],
)
def test_bad_sink_is_refused_and_changes_nothing(kw: dict[str, Any], message: str) -> None:
    good = RecordingSink(events=["client.connected"])
    hooks = EventHooks(NODE, [good])
    with pytest.raises(ValueError, match=message):
        hooks.set_sinks([RecordingSink(name="bad", **kw)])
    assert hooks.sinks == (good,) and hooks.want_connected and not hooks.want_publish


def test_a_failing_sink_does_not_stop_the_others(caplog: pytest.LogCaptureFixture) -> None:
    class Broken(RecordingSink):
        def put(self, event: Any) -> bool:
            raise RuntimeError("boom")

    good = RecordingSink(events=["message.publish"])
    hooks = EventHooks(NODE, [Broken(events=["message.publish"], name="broken"), good])
    with caplog.at_level(logging.ERROR, logger="mqhook.events"):
        hooks.message_publish(msg("t"))
    assert len(good.got) == 1 and "broken" in caplog.text


# -- pressure and on_relief ---------------------------------------------------------------------


def test_on_relief_without_pressure_calls_at_once() -> None:
    hooks = EventHooks(NODE, [FakeSink(events=["message.publish"], high_water=10)])
    calls: list[int] = []
    hooks.on_relief(lambda: calls.append(1))
    assert calls == [1] and hooks.pressure is False


def test_pressure_follows_a_saturated_sink() -> None:
    sink = FakeSink(events=["message.publish"], high_water=2)
    hooks = EventHooks(NODE, [sink])
    hooks.message_publish(msg("t"))
    assert hooks.pressure is False
    hooks.message_publish(msg("t"))
    assert hooks.pressure is True and len(sink.relief) == 1
    hooks.message_publish(msg("t"))
    assert len(sink.relief) == 1  # one relief request per saturation
    calls: list[int] = []
    hooks.on_relief(lambda: calls.append(1))
    assert calls == []
    sink.drain()
    assert calls == [1] and hooks.pressure is False
    sink.drain()
    assert calls == [1]  # once only


def test_relief_waits_for_every_saturated_sink() -> None:
    a = FakeSink(events=["message.publish"], high_water=1, name="a")
    b = FakeSink(events=["client.connected"], high_water=1, name="b")
    broker, hooks = broker_with(a, b)
    connected(broker)  # b saturated
    hooks.message_publish(msg("t"))  # a saturated
    calls: list[str] = []
    hooks.on_relief(lambda: calls.append("x"))
    a.drain()
    assert calls == [] and hooks.pressure is True
    b.drain()
    assert calls == ["x"] and hooks.pressure is False


def test_relief_waits_only_for_sinks_saturated_when_asked() -> None:
    a = FakeSink(events=["message.publish"], topics=("a",), high_water=1, name="a")
    b = FakeSink(events=["message.publish"], topics=("b",), high_water=1, name="b")
    hooks = EventHooks(NODE, [a, b])
    hooks.message_publish(msg("a"))
    calls: list[str] = []
    hooks.on_relief(lambda: calls.append("x"))
    hooks.message_publish(msg("b"))  # b saturates after the callback was registered
    a.drain()
    assert calls == ["x"] and hooks.pressure is True  # b still holds publishers that ask from now on
    late: list[str] = []
    hooks.on_relief(lambda: late.append("y"))
    b.drain()
    assert late == ["y"] and hooks.pressure is False


def test_removing_a_saturated_sink_releases_pressure() -> None:
    sink = FakeSink(events=["message.publish"], high_water=1)
    hooks = EventHooks(NODE, [sink])
    hooks.message_publish(msg("t"))
    calls: list[int] = []
    hooks.on_relief(lambda: calls.append(1))
    hooks.set_sinks([])
    assert calls == [1] and hooks.pressure is False
    sink.drain()  # its late relief changes nothing
    assert calls == [1] and hooks.pressure is False


def test_broker_sees_pressure_after_a_publish() -> None:
    sink = FakeSink(events=["message.publish"], high_water=1)
    broker, hooks = broker_with(sink)
    c = connected(broker)
    c.send(P.Publish("t", b"x", 0))
    assert broker.hooks.pressure is True
    resumed: list[bool] = []
    broker.hooks.on_relief(lambda: resumed.append(True))
    sink.drain()
    assert resumed == [True] and hooks.pressure is False
