"""Retained messages sent on SUBSCRIBE flow through the window as the client acknowledges, not
through the bounded queue (issue 10, defect 4): nothing is dropped, whatever max_queued_messages."""

from __future__ import annotations

from mqhook.mqtt import packets as P

from .brokerkit import Client, make_broker


def retain(broker, n: int, qos: int = 1, prefix: str = "ret") -> None:
    pub = Client(broker)
    pub.connect("retainer")
    for i in range(n):
        pub.send(P.Publish(f"{prefix}/{i}", b"%d" % i, qos, retain=True, packet_id=(i % 60000) + 1 if qos else None))
    pub.send(P.Disconnect())


def publishes(c: Client) -> list[P.Publish]:
    return [x for x in c.link.take() if isinstance(x, P.Publish)]


def test_thousands_of_retained_qos1_messages_all_arrive_through_a_small_window() -> None:
    broker, _ = make_broker(max_queued_messages=10, max_inflight=20)
    retain(broker, 2000)
    sub = Client(broker)
    sub.connect("sub")
    sub.send(P.Subscribe(1, [P.Subscription("ret/#", 1)]))
    got: list[bytes] = []
    window = publishes(sub)
    assert len(window) == 20  # the window, not the whole backlog, is on the wire
    while window:
        got += [m.payload for m in window]
        for m in window:
            sub.send(P.Puback(m.packet_id))
        window = publishes(sub)
    assert sorted(got, key=int) == [b"%d" % i for i in range(2000)] and len(got) == 2000
    assert broker.stats.deliveries_dropped["queue_full"] == 0


def test_retained_qos0_to_a_full_write_buffer_waits_instead_of_dropping() -> None:
    broker, _ = make_broker(max_queued_messages=10)
    retain(broker, 500, qos=0)
    sub = Client(broker)
    sub.connect("slow")
    sub.conn.pause_writing()  # its write buffer is full before the SUBSCRIBE is handled
    sub.send(P.Subscribe(1, [P.Subscription("ret/#", 0)]))
    assert publishes(sub) == []
    sub.conn.resume_writing()
    assert len(publishes(sub)) == 500
    assert broker.stats.deliveries_dropped["qos0_msg"] == 0


def test_a_live_message_waits_behind_the_retained_backlog_of_its_topic() -> None:
    broker, _ = make_broker(max_inflight=2)
    retain(broker, 5)
    sub = Client(broker)
    sub.connect("sub")
    sub.send(P.Subscribe(1, [P.Subscription("ret/#", 1)]))
    first = publishes(sub)
    assert len(first) == 2
    live = Client(broker)
    live.connect("live")
    live.send(P.Publish("ret/4", b"new", 1, packet_id=1))  # newer than the retained ret/4
    order: list[bytes] = [m.payload for m in first]
    window = first
    while window:
        for m in window:
            sub.send(P.Puback(m.packet_id))
        window = publishes(sub)
        order += [m.payload for m in window]
    assert order.index(b"new") == len(order) - 1  # after every retained message, the old ret/4 included
    assert sorted(order[:-1], key=int) == [b"0", b"1", b"2", b"3", b"4"]


def test_the_backlog_resumes_with_the_session() -> None:
    broker, _ = make_broker(max_inflight=3)
    retain(broker, 10)
    sub = Client(broker)
    sub.connect("persistent", clean=False, properties={"Session-Expiry-Interval": 60})
    sub.send(P.Subscribe(1, [P.Subscription("ret/#", 1)]))
    assert len(publishes(sub)) == 3
    sub.conn.connection_lost()
    again = Client(broker)
    again.send(P.Connect("persistent", proto_level=5, clean_start=False, properties={"Session-Expiry-Interval": 60}))
    got = publishes(again)  # after its CONNACK
    assert len(got) == 3 and all(m.dup for m in got)  # the unacknowledged window, resent with DUP
    total = len(got)
    window = got
    while window:
        for m in window:
            again.send(P.Puback(m.packet_id))
        window = publishes(again)
        total += len(window)
    assert total == 10
