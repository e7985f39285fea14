"""Flow control of one connection, without sockets: a publisher held by backpressure (only the one
whose messages feed a consumer over its high water, in order, its keepalive and its acks still
served) and a client that does not read what it is sent (nothing more is read from it)."""

from __future__ import annotations

from typing import Any

from mqhook.broker.broker import Broker
from mqhook.broker.connection import HOLD_BYTES
from mqhook.events import EventRouter
from mqhook.mqtt import packets as P

from .brokerkit import Client, make_broker
from .test_event_router import FakeSink

NODE = "mqhook@test"


def held_broker(topics: tuple[str, ...] = ("#",)) -> tuple[Broker, FakeSink, Any]:
    """A broker whose one consumer (on ``topics``) saturates at its first event."""
    broker, clock = make_broker()
    sink = FakeSink(events=["message.publish"], topics=topics, high_water=1)
    EventRouter(NODE, broker.hooks, broker.backpressure, [sink])
    return broker, sink, clock


def client(broker: Broker, client_id: str) -> Client:
    c = Client(broker)
    c.connect(client_id)
    return c


def kinds(c: Client) -> list[str]:
    return [type(x).__name__ for x in c.link.take()]


def test_only_a_publisher_whose_messages_feed_the_saturated_consumer_is_held() -> None:
    broker, _sink, _ = held_broker(topics=("load/#",))
    loader = client(broker, "loader")
    loader.send(P.Publish("load/t", b"1", 1, packet_id=1))
    assert kinds(loader) == ["Puback"] and loader.conn.holding
    other = client(broker, "other")
    other.send(P.Publish("other/x", b"x", 1, packet_id=1))  # no event for the saturated consumer
    other.send(P.Subscribe(2, [P.Subscription("other/#", 1)]))
    assert kinds(other) == ["Puback", "Suback"] and not other.conn.holding
    assert broker.gauges()["paused_backpressure"] == 1


def test_held_packets_are_handled_in_order_on_relief() -> None:
    broker, sink, _ = held_broker()
    watcher = client(broker, "watcher")
    watcher.send(P.Subscribe(1, [P.Subscription("order/#", 0)]))
    watcher.link.take()
    pub = client(broker, "pub")
    pub.send(P.Publish("order/0", b"0", 0))  # saturates the consumer: what follows is held
    watcher.link.take()
    pub.send(P.Publish("order/1", b"1", 1, packet_id=1))
    pub.send(P.Subscribe(2, [P.Subscription("mine", 0)]))
    pub.send(P.Publish("order/2", b"2", 1, packet_id=2))
    pub.send(P.Unsubscribe(3, ["mine"]))
    assert kinds(pub) == [] and watcher.link.take() == []
    sink.high_water = None  # the consumer keeps up from now on
    sink.drain()
    assert kinds(pub) == ["Puback", "Suback", "Puback", "Unsuback"]
    assert [m.payload for m in watcher.link.take()] == [b"1", b"2"]
    assert not pub.conn.holding and broker.gauges()["paused_backpressure"] == 0


def test_a_held_publisher_still_gets_pingresp_and_its_acks_are_handled() -> None:
    broker, sink, _ = held_broker()
    pub = client(broker, "pub")
    pub.send(P.Subscribe(1, [P.Subscription("back", 1)]))
    pub.link.take()
    feeder = client(broker, "feeder")
    feeder.send(P.Publish("t", b"fill", 0))  # the feeder is held; the consumer is over high water
    feeder.send(P.Publish("back", b"to pub", 1, packet_id=1))  # held too: reaches pub after relief
    pub.send(P.Publish("t", b"mine", 0))  # pub's own message feeds the saturated consumer: pub holds
    assert pub.conn.holding
    pub.send(P.Pingreq())
    assert kinds(pub) == ["Pingresp"]  # keepalive served while held
    sink.high_water = None
    sink.drain()
    (delivery,) = pub.link.take()
    assert isinstance(delivery, P.Publish) and delivery.payload == b"to pub"
    session = pub.conn.session
    assert session is not None and len(session.inflight) == 1
    pub.send(P.Puback(delivery.packet_id))  # an ack is handled at once, held or not
    assert len(session.inflight) == 0


def test_past_hold_bytes_the_link_stops_reading_until_relief() -> None:
    broker, sink, _ = held_broker()
    pub = client(broker, "pub")
    pub.send(P.Publish("t", b"x", 0))
    payload = b"p" * 50_000
    sent = 0
    while pub.link.reading:
        pub.send(P.Publish("t", payload, 0))
        sent += len(payload)
    assert HOLD_BYTES < sent <= HOLD_BYTES + len(payload) + 100
    sink.high_water = None
    sink.drain()
    assert pub.link.reading and not pub.conn.holding


def test_a_client_that_does_not_read_is_not_read() -> None:
    broker, _ = make_broker()
    c = client(broker, "deaf")
    c.conn.pause_writing()  # the transport's write buffer passed write_buffer_high
    assert not c.link.reading and broker.gauges()["paused_write_buffer_full"] == 1
    c.conn.resume_writing()
    assert c.link.reading and broker.gauges()["paused_write_buffer_full"] == 0


def test_reading_resumes_only_when_neither_reason_holds() -> None:
    broker, sink, _ = held_broker()
    c = client(broker, "both")
    c.send(P.Publish("t", b"x", 0))
    for _ in range(6):
        c.send(P.Publish("t", b"p" * 50_000, 0))  # past HOLD_BYTES: stopped for backpressure
    c.conn.pause_writing()  # and its write buffer is full
    assert not c.link.reading
    sink.high_water = None
    sink.drain()
    assert not c.link.reading  # still not reading what it sends: it does not read what we send
    c.conn.resume_writing()
    assert c.link.reading


def test_a_full_write_buffer_queues_deliveries_and_resume_sends_them() -> None:
    broker, _ = make_broker()
    sub = client(broker, "sub")
    sub.send(P.Subscribe(1, [P.Subscription("q", 1)]))
    sub.link.take()
    sub.conn.pause_writing()
    pub = client(broker, "pub")
    for i in range(3):
        pub.send(P.Publish("q", str(i).encode(), 1, packet_id=i + 1))
    assert sub.link.take() == []  # queued in the session, not written into a full buffer
    sub.conn.resume_writing()
    assert [m.payload for m in sub.link.take()] == [b"0", b"1", b"2"]


def test_a_closed_connection_leaves_the_gauges() -> None:
    broker, sink, _ = held_broker()
    c = client(broker, "gone")
    c.send(P.Publish("t", b"x", 0))
    c.conn.pause_writing()
    assert broker.gauges()["paused_backpressure"] == 1 and broker.gauges()["paused_write_buffer_full"] == 1
    c.conn.connection_lost()
    assert broker.gauges()["paused_backpressure"] == 0 and broker.gauges()["paused_write_buffer_full"] == 0
    sink.drain()  # the relief finds nothing to resume
    assert broker.gauges()["paused_backpressure"] == 0
