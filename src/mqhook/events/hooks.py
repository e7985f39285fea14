"""EventHooks: the broker's hook points -> event structs -> the sinks that want them.

This module owns routing of events to sinks and the backpressure signal.

- ``want_*`` flags are True only while some sink wants that event, so the broker
  skips the call (and builds no argument) otherwise.
- Message events go through one ``_Route`` per event: a topic trie (filter -> sink),
  so only sinks whose ``topics`` match the message's topic see it, or, when every
  filter is ``"#"``, a fixed tuple of sinks. ``"#"`` does not match ``$``-topics, like
  EMQX's rule ``FROM "#"``. No match: nothing is built.
- A sink receives an event as its JSON object (bytes) and the client id it is about
  (the ordering key). Message events are written straight from the ``Message`` by
  ``writer.MessageWriter``, once per payload encoding the receiving sinks use; client
  and session events are built as structs (``build``) and encoded once.
- ``pressure`` is True while any sink reports ``saturated`` after a put; each
  saturated sink is asked for one relief callback. ``on_relief(cb)`` calls ``cb``
  once every sink saturated at that moment has relieved (at once if none is).

A sink that raises in ``put`` is logged and skipped: a broken webhook must not
break MQTT traffic.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence
from typing import TYPE_CHECKING, Any, cast

from mqhook import hooks as H
from mqhook.errors import ProtocolError
from mqhook.events import build
from mqhook.events.writer import PAYLOAD_ENCODINGS, MessageWriter, event_json
from mqhook.matcher import TopicTrie
from mqhook.mqtt.topics import validate_topic_filter

if TYPE_CHECKING:
    from mqhook.broker.connection import Connection
    from mqhook.broker.message import Message
    from mqhook.broker.session import Session
    from mqhook.events.sink import EventSink

__all__ = ["EventHooks"]

log = logging.getLogger("mqhook.events")

# Event name -> the Hooks flag that gates its call site.
WANT_FLAGS: dict[str, str] = {
    H.MESSAGE_PUBLISH: "want_publish",
    H.MESSAGE_DELIVERED: "want_delivered",
    H.MESSAGE_ACKED: "want_acked",
    H.MESSAGE_DROPPED: "want_dropped",
    H.DELIVERY_DROPPED: "want_delivery_dropped",
    H.CLIENT_CONNECTED: "want_connected",
    H.CLIENT_DISCONNECTED: "want_disconnected",
    H.CLIENT_CONNACK: "want_connack",
    H.CHECK_AUTHZ_COMPLETE: "want_authz",
    H.CHECK_AUTHN_COMPLETE: "want_authn",
    H.SESSION_SUBSCRIBED: "want_subscribed",
    H.SESSION_UNSUBSCRIBED: "want_unsubscribed",
}


def _check_sink(sink: EventSink) -> None:
    """Fail loudly on a misconfigured sink: unknown event, bad encoding, bad topic filter."""
    unknown = sorted(set(sink.events) - set(H.ALL_EVENTS))
    if unknown:
        raise ValueError(f"sink {sink.name!r}: unknown event name(s) {unknown}; known: {list(H.ALL_EVENTS)}")
    if sink.payload_encoding not in PAYLOAD_ENCODINGS:
        raise ValueError(
            f"sink {sink.name!r}: payload_encoding {sink.payload_encoding!r} is not one of {sorted(PAYLOAD_ENCODINGS)}"
        )
    for topic_filter in sink.topics:
        try:
            validate_topic_filter(topic_filter)
        except ProtocolError as exc:
            raise ValueError(f"sink {sink.name!r}: topic filter {topic_filter!r}: {exc}") from exc


class _Route:
    """Which sinks want one message event for a topic: a trie of their filters, or, when every
    filter is ``#`` (a webhook on all messages, the usual case), one tuple and no lookup."""

    __slots__ = ("every", "single", "trie")

    def __init__(self, trie: TopicTrie, every: tuple[tuple[EventSink, str], ...] | None) -> None:
        self.trie = trie
        self.every = every
        self.single = every[0] if every is not None and len(every) == 1 else None  # one webhook on all topics

    @classmethod
    def build(cls, event: str, sinks: Sequence[EventSink]) -> _Route | None:
        """None if no sink wants ``event``."""
        trie = TopicTrie()
        every: list[tuple[EventSink, str]] = []
        only_hash = True
        for i, sink in enumerate(sinks):
            if event in sink.events and sink.topics:
                every.append((sink, sink.payload_encoding))
                for topic_filter in sink.topics:
                    trie.insert(topic_filter, i, (sink, sink.payload_encoding))
                    only_hash = only_hash and topic_filter == "#"
        if not every:
            return None
        return cls(trie, tuple(every) if only_hash else None)

    def targets(self, topic: str) -> Collection[tuple[EventSink, str]]:
        """(sink, payload encoding) of each sink with a filter matching ``topic``, once per sink."""
        every = self.every
        if every is not None:
            return () if topic[:1] == "$" else every  # "#" does not match $-topics [MQTT-4.7.2-1]
        groups = self.trie.match(topic)
        if not groups:
            return ()
        if len(groups) == 1:
            return cast("Collection[tuple[EventSink, str]]", groups[0].values())
        merged: dict[Any, Any] = {}
        for subs in groups:
            merged.update(subs)  # one sink with several matching filters gets one event
        return merged.values()


class EventHooks(H.Hooks):
    """Hook listener that builds EMQX-shaped events and puts them into ``EventSink``s."""

    def __init__(self, node: str, sinks: Sequence[EventSink] = ()) -> None:
        self.node = node
        self._writer = MessageWriter(node)
        self.pressure = False
        self._saturated: dict[int, EventSink] = {}  # id(sink) -> sink, while it reports saturated
        self._waiters: list[tuple[set[int], Callable[[], None]]] = []
        self.set_sinks(sinks)

    # -- configuration --------------------------------------------------------------------

    def set_sinks(self, sinks: Sequence[EventSink]) -> None:
        """Replace every sink and rebuild the indexes; raises ValueError for a bad sink (and changes nothing)."""
        sinks = tuple(sinks)
        for sink in sinks:
            _check_sink(sink)
        routes = {event: _Route.build(event, sinks) for event in H.MESSAGE_EVENTS}
        direct = {event: tuple(s for s in sinks if event in s.events) for event in H.CLIENT_EVENTS}
        self.sinks = sinks
        self._publish = routes[H.MESSAGE_PUBLISH]
        self._delivered = routes[H.MESSAGE_DELIVERED]
        self._acked = routes[H.MESSAGE_ACKED]
        self._dropped = routes[H.MESSAGE_DROPPED]
        self._delivery_dropped = routes[H.DELIVERY_DROPPED]
        self._connected = direct[H.CLIENT_CONNECTED]
        self._disconnected = direct[H.CLIENT_DISCONNECTED]
        self._connack = direct[H.CLIENT_CONNACK]
        self._authz = direct[H.CHECK_AUTHZ_COMPLETE]
        self._authn = direct[H.CHECK_AUTHN_COMPLETE]
        self._subscribed = direct[H.SESSION_SUBSCRIBED]
        self._unsubscribed = direct[H.SESSION_UNSUBSCRIBED]
        for event, flag in WANT_FLAGS.items():
            setattr(self, flag, routes[event] is not None if event in routes else bool(direct[event]))
        # A removed sink no longer holds publishers back.
        kept = {id(s) for s in sinks}
        for key in [k for k in self._saturated if k not in kept]:
            self._relieved(key)

    # -- delivery to sinks ----------------------------------------------------------------

    def _put(self, sink: EventSink, raw: bytes, clientid: str) -> None:
        try:
            sink.put(raw, clientid)
            saturated = sink.saturated
        except Exception:
            log.exception("event sink %s failed on %s", getattr(sink, "name", sink), raw[:40])
            return
        if saturated and id(sink) not in self._saturated:
            self._hold(sink)

    def _put_all(self, sinks: tuple[EventSink, ...], event: Any) -> None:
        raw = event_json(event)
        clientid = event.clientid
        for sink in sinks:
            self._put(sink, raw, clientid)

    def _route(self, route: _Route, topic: str, clientid: str, write: Callable[..., bytes], *args: Any) -> None:
        """Write ``write(*args, encoding)`` once per encoding needed by the sinks that match ``topic``."""
        targets = route.targets(topic)
        if not targets:
            return
        if len(targets) == 1:  # the common case: one webhook
            for sink, encoding in targets:
                self._put(sink, write(*args, encoding), clientid)
            return
        written: dict[str, bytes] = {}
        for sink, encoding in targets:
            raw = written.get(encoding)
            if raw is None:
                raw = written[encoding] = write(*args, encoding)
            self._put(sink, raw, clientid)

    # -- backpressure ---------------------------------------------------------------------

    def _hold(self, sink: EventSink) -> None:
        key = id(sink)
        self._saturated[key] = sink
        self.pressure = True
        try:
            sink.on_relief(lambda: self._relieved(key))
        except Exception:
            log.exception("event sink %s failed in on_relief", getattr(sink, "name", sink))
            self._relieved(key)

    def _relieved(self, key: int) -> None:
        if self._saturated.pop(key, None) is None:
            return
        if not self._saturated:
            self.pressure = False
        ready: list[Callable[[], None]] = []
        waiting: list[tuple[set[int], Callable[[], None]]] = []
        for pending, callback in self._waiters:
            pending.discard(key)
            if pending:
                waiting.append((pending, callback))
            else:
                ready.append(callback)
        self._waiters = waiting
        for callback in ready:
            try:
                callback()
            except Exception:
                log.exception("relief callback %r failed", callback)

    def on_relief(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once, when every sink saturated now has relieved (at once if none)."""
        if not self._saturated:
            callback()
            return
        self._waiters.append((set(self._saturated), callback))

    # -- message events -------------------------------------------------------------------

    def message_publish(self, msg: Message) -> None:
        route = self._publish
        if route is None:
            return
        single = route.single
        if single is None:
            self._route(route, msg.topic, msg.sender, self._writer.publish, msg)
        elif msg.topic[:1] != "$":  # every PUBLISH into one webhook: _route and _put inlined (measured)
            sink, encoding = single
            try:
                sink.put(self._writer.publish(msg, encoding), msg.sender)
                saturated = sink.saturated
            except Exception:
                log.exception("event sink %s failed on message.publish", getattr(sink, "name", sink))
                return
            if saturated and id(sink) not in self._saturated:
                self._hold(sink)

    def message_dropped(self, msg: Message, reason: str) -> None:
        route = self._dropped
        if route is not None:
            self._route(route, msg.topic, msg.sender, self._writer.dropped, msg, reason)

    def message_delivered(self, session: Session, msg: Message, qos: int, retain: bool) -> None:
        route = self._delivered
        if route is not None:
            self._route(route, msg.topic, session.client_id, self._writer.delivered, session, msg, qos, retain)

    def message_acked(self, session: Session, msg: Message, qos: int, puback_props: dict[str, Any]) -> None:
        route = self._acked
        if route is not None:
            self._route(route, msg.topic, session.client_id, self._writer.acked, session, msg, qos, puback_props)

    def delivery_dropped(self, session: Session, msg: Message, qos: int, reason: str) -> None:
        route = self._delivery_dropped
        if route is not None:
            self._route(route, msg.topic, session.client_id, self._writer.delivery_dropped, session, msg, qos, reason)

    # -- client and session events --------------------------------------------------------

    def client_connected(self, conn: Connection) -> None:
        if self._connected:
            self._put_all(self._connected, build.client_connected(conn, self.node))

    def client_connack(self, conn: Connection, reason_code: int) -> None:
        if self._connack:
            self._put_all(self._connack, build.client_connack(conn, reason_code, self.node))

    def client_disconnected(self, conn: Connection, reason: str, disconn_props: dict[str, Any]) -> None:
        if self._disconnected:
            self._put_all(self._disconnected, build.client_disconnected(conn, reason, disconn_props, self.node))

    def check_authn_complete(self, conn: Connection, reason_code: str, is_superuser: bool, is_anonymous: bool) -> None:
        if self._authn:
            event = build.check_authn_complete(conn, reason_code, is_superuser, is_anonymous, self.node)
            self._put_all(self._authn, event)

    def check_authz_complete(self, conn: Connection, topic: str, action: str, result: str, source: str) -> None:
        if self._authz:
            event = build.check_authz_complete(conn, topic, action, result, source, self.node)
            self._put_all(self._authz, event)

    def session_subscribed(self, conn: Connection, topic_filter: str, qos: int, sub_props: dict[str, Any]) -> None:
        if self._subscribed:
            event = build.session_subscribed(conn, topic_filter, qos, sub_props, self.node)
            self._put_all(self._subscribed, event)

    def session_unsubscribed(self, conn: Connection, topic_filter: str, qos: int, unsub_props: dict[str, Any]) -> None:
        if self._unsubscribed:
            event = build.session_unsubscribed(conn, topic_filter, qos, unsub_props, self.node)
            self._put_all(self._unsubscribed, event)
