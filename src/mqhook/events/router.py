"""EventRouter: the broker's hook points -> EMQX-shaped events -> the consumers that want them.

This module owns which consumer gets which event, and the consumers' side of backpressure.

- For every event of the table (``catalogue.EVENTS``) that some consumer wants, the router puts a
  listener in the broker's hook point of that name; the other slots stay None, so an event nobody
  wants costs the broker one attribute read and nothing is built.
- Message events are routed by topic (``_Route``): a trie of the consumers' filters, or, when
  every filter is ``"#"``, a fixed tuple of consumers and no lookup. ``"#"`` does not match
  ``$``-topics, like EMQX's rule ``FROM "#"``. No match: nothing is written. A matching event is
  written once per payload encoding the receiving consumers use (``writer.MessageWriter``).
- Client and session events are built as structs (``build``) and encoded once for all consumers.
- A consumer that reports ``saturated`` after a put holds the broker's ``Backpressure`` until its
  ``on_relief`` callback, and the put notes it in ``Backpressure.fed``, so the publisher of that
  message waits for it (and no other publisher does); a removed consumer lets go at once.

A consumer that raises in ``put`` is logged and skipped: a broken webhook must not break MQTT.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, cast

from mqhook.errors import ConfigError, ProtocolError
from mqhook.events.catalogue import EVENT_NAMES, EVENTS, ClientEvent, MessageEvent
from mqhook.events.model import MessagePublish
from mqhook.events.writer import PAYLOAD_ENCODINGS, MessageWriter, event_json
from mqhook.matcher import TopicTrie
from mqhook.mqtt.topics import validate_topic_filter

if TYPE_CHECKING:
    from mqhook.broker.flow import Backpressure
    from mqhook.broker.hooks import Hooks
    from mqhook.broker.message import Message
    from mqhook.events.consumer import EventConsumer

__all__ = ["EventRouter"]

log = logging.getLogger("mqhook.events")

Target = tuple["EventConsumer", str]  # a consumer and the payload encoding it wants


def check_consumer(consumer: EventConsumer) -> None:
    """Refuse a misconfigured consumer: unknown event, bad encoding, bad topic filter."""
    unknown = sorted(set(consumer.events) - set(EVENT_NAMES))
    if unknown:
        raise ConfigError(f"consumer {consumer.name!r}: unknown event name(s) {unknown}; known: {list(EVENT_NAMES)}")
    if consumer.payload_encoding not in PAYLOAD_ENCODINGS:
        raise ConfigError(
            f"consumer {consumer.name!r}: payload_encoding {consumer.payload_encoding!r} is not one of "
            f"{sorted(PAYLOAD_ENCODINGS)}"
        )
    for topic_filter in consumer.topics:
        try:
            validate_topic_filter(topic_filter)
        except ProtocolError as exc:
            raise ConfigError(f"consumer {consumer.name!r}: topic filter {topic_filter!r}: {exc}") from exc


class _Route:
    """Which consumers want one message event for a topic: a trie of their filters, or, when every
    filter is ``#`` (a webhook on all messages, the usual case), one tuple and no lookup."""

    __slots__ = ("every", "trie")

    def __init__(self, trie: TopicTrie, every: tuple[Target, ...] | None) -> None:
        self.trie = trie
        self.every = every

    @classmethod
    def build(cls, event: str, consumers: Sequence[EventConsumer]) -> _Route | None:
        """None if no consumer wants ``event``."""
        trie = TopicTrie()
        every: list[Target] = []
        only_hash = True
        for i, consumer in enumerate(consumers):
            if event in consumer.events and consumer.topics:
                every.append((consumer, consumer.payload_encoding))
                for topic_filter in consumer.topics:
                    trie.insert(topic_filter, i, (consumer, consumer.payload_encoding))
                    only_hash = only_hash and topic_filter == "#"
        if not every:
            return None
        return cls(trie, tuple(every) if only_hash else None)

    def targets(self, topic: str) -> Collection[Target]:
        """(consumer, payload encoding) of each consumer with a filter matching ``topic``, once each."""
        every = self.every
        if every is not None:
            return () if topic[:1] == "$" else every  # "#" does not match $-topics [MQTT-4.7.2-1]
        groups = self.trie.match(topic)
        if not groups:
            return ()
        if len(groups) == 1:
            return cast("Collection[Target]", groups[0].values())
        merged: dict[Any, Any] = {}
        for subs in groups:
            merged.update(subs)  # one consumer with several matching filters gets one event
        return merged.values()


class EventRouter:
    """Fills ``hooks`` with the listeners ``consumers`` need; holds ``backpressure`` for them."""

    def __init__(
        self, node: str, hooks: Hooks, backpressure: Backpressure, consumers: Sequence[EventConsumer] = ()
    ) -> None:
        self.node = node
        self._hooks = hooks
        self._backpressure = backpressure
        self._writer = MessageWriter(node)
        self.consumers: tuple[EventConsumer, ...] = ()
        self.set_consumers(consumers)

    # -- configuration --------------------------------------------------------------------------

    def set_consumers(self, consumers: Sequence[EventConsumer]) -> None:
        """Replace every consumer and the listeners; raises ConfigError for a bad one (and changes nothing)."""
        consumers = tuple(consumers)
        for consumer in consumers:
            check_consumer(consumer)
        listeners: dict[str, Callable[..., None] | None] = {}
        for event in EVENTS:
            if isinstance(event, MessageEvent):
                route = _Route.build(event.name, consumers)
                listeners[event.name] = None if route is None else self._message_listener(event, route)
            else:
                wanting = tuple(c for c in consumers if event.name in c.events)
                listeners[event.name] = self._client_listener(event, wanting) if wanting else None
        removed = [c for c in self.consumers if c not in consumers]
        self.consumers = consumers
        for name, listener in listeners.items():
            self._hooks.install(name, listener)
        for consumer in removed:  # a removed consumer no longer holds publishers back (others' holds stay)
            self._backpressure.release(consumer)

    # -- delivery to consumers --------------------------------------------------------------------

    def _put(self, consumer: EventConsumer, raw: bytes, clientid: str) -> None:
        try:
            consumer.put(raw, clientid)
            saturated = consumer.saturated
        except Exception:
            log.exception("event consumer %s failed on %s", getattr(consumer, "name", consumer), raw[:40])
            return
        if saturated:
            backpressure = self._backpressure
            if not backpressure.holding(consumer):
                self._hold(consumer)
            backpressure.note_fed(consumer)

    def _hold(self, consumer: EventConsumer) -> None:
        backpressure = self._backpressure
        backpressure.hold(consumer)
        try:
            consumer.on_relief(partial(backpressure.release, consumer))
        except Exception:
            log.exception("event consumer %s failed in on_relief", getattr(consumer, "name", consumer))
            backpressure.release(consumer)

    def _client_listener(self, event: ClientEvent, consumers: tuple[EventConsumer, ...]) -> Callable[..., None]:
        build, node, put = event.build, self.node, self._put

        def listener(*args: Any) -> None:
            struct: Any = build(node, *args)
            raw = event_json(struct)
            for consumer in consumers:
                put(consumer, raw, struct.clientid)

        return listener

    def _message_listener(self, event: MessageEvent, route: _Route) -> Callable[..., None]:
        write = partial(event.write, self._writer)  # write(encoding, msg, *rest)
        every = route.every
        if event.struct is MessagePublish and every is not None and len(every) == 1:
            return self._publish_into_one(every[0])
        put = self._put

        def listener(msg: Message, *rest: Any) -> None:
            targets = route.targets(msg.topic)
            if not targets:
                return
            # The ordering key: the subscriber of a copy, else the publisher.
            clientid = rest[0].client_id if event.receiver else msg.sender
            if len(targets) == 1:  # the common case: one webhook
                for consumer, encoding in targets:
                    put(consumer, write(encoding, msg, *rest), clientid)
                return
            written: dict[str, bytes] = {}
            for consumer, encoding in targets:
                raw = written.get(encoding)
                if raw is None:
                    raw = written[encoding] = write(encoding, msg, *rest)
                put(consumer, raw, clientid)

        return listener

    def _publish_into_one(self, target: Target) -> Callable[[Message], None]:
        """message.publish into one webhook on all topics, the hot path of a webhook on every message:
        no route lookup, the writer and the put called straight (measured: bench/test_bench_events.py)."""
        consumer, encoding = target
        write = self._writer.publish
        consumer_put = consumer.put
        backpressure = self._backpressure
        holding = backpressure.holding
        hold = self._hold

        def publish_into_one(msg: Message) -> None:
            if msg.topic[:1] == "$":  # "#" does not match $-topics [MQTT-4.7.2-1]
                return
            try:
                consumer_put(write(encoding, msg), msg.sender)
                saturated = consumer.saturated
            except Exception:
                log.exception("event consumer %s failed on message.publish", getattr(consumer, "name", consumer))
                return
            if saturated:
                if not holding(consumer):
                    hold(consumer)
                backpressure.note_fed(consumer)

        return publish_into_one
