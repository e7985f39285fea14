"""A QoS 1/2 subscriber a window behind makes its publishers wait (issue 10, "QoS 1 at default
settings"): a fast flood into a healthy subscriber drops nothing with the default queue, one that
stops acknowledging holds them for at most flow_control_timeout, on the broker's clock."""

from __future__ import annotations

from typing import Any

from mqhook.mqtt import packets as P

from .brokerkit import Client, make_broker


def subscriber(broker: Any, client_id: str = "sub", window: int = 4, topic: str = "t/#") -> Client:
    c = Client(broker)
    c.connect(client_id, properties={"Receive-Maximum": window})
    c.send(P.Subscribe(1, [P.Subscription(topic, 1)]))
    c.link.take()
    return c


def ack_all(sub: Client) -> list[bytes]:
    """Acknowledge what arrives until nothing more comes; the payloads, in order."""
    got: list[bytes] = []
    window = [x for x in sub.link.take() if isinstance(x, P.Publish)]
    while window:
        got += [m.payload for m in window]
        for m in window:
            sub.send(P.Puback(m.packet_id))
        window = [x for x in sub.link.take() if isinstance(x, P.Publish)]
    return got


def test_a_flood_into_a_healthy_subscriber_drops_nothing_with_the_default_queue() -> None:
    broker, _ = make_broker()  # max_queued_messages 1000
    sub = subscriber(broker, window=4)
    pub = Client(broker)
    pub.connect("pub")
    for i in range(5000):  # far more than the queue holds, as fast as the client can write
        pub.send(P.Publish("t/x", b"%d" % i, 1, packet_id=(i % 65000) + 1))
    assert pub.conn.holding and broker.gauges()["subscribers_behind"] == 1
    assert sub.conn.session is not None and sub.conn.session.queue is not None
    assert len(sub.conn.session.queue) <= 4  # one window queued, the rest held at the publisher
    got = ack_all(sub)
    assert got == [b"%d" % i for i in range(5000)]  # all of them, in order
    assert broker.stats.deliveries_dropped["queue_full"] == 0
    assert not pub.conn.holding and broker.gauges()["subscribers_behind"] == 0
    assert len([x for x in pub.link.take() if isinstance(x, P.Puback)]) == 5000


def test_only_the_publishers_of_the_subscriber_behind_wait() -> None:
    broker, _ = make_broker()
    subscriber(broker, "slow", window=2, topic="slow/#")
    fast = Client(broker)
    fast.connect("fast")
    fast.send(P.Subscribe(1, [P.Subscription("fast/#", 0)]))
    fast.link.take()
    a = Client(broker)
    a.connect("a")
    for i in range(10):
        a.send(P.Publish("slow/x", b"%d" % i, 1, packet_id=i + 1))
    assert a.conn.holding
    b = Client(broker)
    b.connect("b")
    b.send(P.Publish("fast/x", b"go", 1, packet_id=1))
    assert not b.conn.holding and [x.payload for x in fast.link.take()] == [b"go"]


def test_a_subscriber_that_stops_acknowledging_holds_them_for_flow_control_timeout_at_most() -> None:
    broker, clock = make_broker(flow_control_timeout=1.0, max_queued_messages=20)
    subscriber(broker, "stuck", window=2)  # will never acknowledge
    other = Client(broker)
    other.connect("other")
    other.send(P.Subscribe(1, [P.Subscription("t/#", 0)]))
    other.link.take()
    pub = Client(broker)
    pub.connect("pub")
    for i in range(50):
        pub.send(P.Publish("t/x", b"%d" % i, 1, packet_id=i + 1))
    assert pub.conn.holding
    assert len(other.link.take()) < 10  # the publisher's other subscriber waits too ...
    clock.advance(1.0 - 2**-10)
    assert pub.conn.holding
    clock.advance(2**-10)  # ... but no longer than flow_control_timeout
    assert not pub.conn.holding and broker.stats.flow_control_timeouts == 1
    assert [x.payload for x in other.link.take()][-1] == b"49"  # everything reached the other one
    assert broker.stats.deliveries_dropped["queue_full"] > 0  # the stuck one's queue took what it could
    pub.send(P.Publish("t/x", b"later", 1, packet_id=60))
    assert not pub.conn.holding  # left behind: it does not hold again until its queue has emptied


def test_flow_control_timeout_0_never_holds_publishers() -> None:
    broker, _ = make_broker(flow_control_timeout=0, max_queued_messages=10)
    subscriber(broker, window=2)
    pub = Client(broker)
    pub.connect("pub")
    for i in range(30):
        pub.send(P.Publish("t/x", b"%d" % i, 1, packet_id=i + 1))
    assert not pub.conn.holding
    assert broker.stats.deliveries_dropped["queue_full"] == 30 - 2 - 10


def test_a_subscriber_going_offline_releases_its_publishers() -> None:
    broker, _ = make_broker()
    sub = Client(broker)
    sub.connect("away", clean=False, properties={"Receive-Maximum": 2, "Session-Expiry-Interval": 60})
    sub.send(P.Subscribe(1, [P.Subscription("t/#", 1)]))
    sub.link.take()
    pub = Client(broker)
    pub.connect("pub")
    for i in range(10):
        pub.send(P.Publish("t/x", b"%d" % i, 1, packet_id=i + 1))
    assert pub.conn.holding
    sub.conn.connection_lost()  # offline: its queue takes what comes, nobody waits for it
    assert not pub.conn.holding and broker.gauges()["subscribers_behind"] == 0


def test_every_held_publisher_gets_its_turn_on_relief() -> None:
    """On relief each held publisher replays a few packets in turn (REPLAY_BATCH), so the room a
    subscriber frees is shared, not taken by the publisher that came to wait first."""
    broker, _ = make_broker()
    sub = subscriber(broker, window=8)
    pubs = []
    for name in ("p1", "p2", "p3"):
        p = Client(broker)
        p.connect(name)
        for i in range(30):
            p.send(P.Publish("t/x", f"{name}-{i}".encode(), 1, packet_id=i + 1))
        pubs.append(p)
    assert all(p.conn.holding for p in pubs)
    acked = {p.conn.client_id: 0 for p in pubs}

    def count_acks() -> dict[str, int]:
        for p in pubs:
            acked[p.conn.client_id] += len([x for x in p.link.take() if isinstance(x, P.Puback)])
        return dict(acked)

    before = count_acks()
    got: list[bytes] = []
    rounds_with_progress = 0
    while any(p.conn.holding for p in pubs):
        window = [x for x in sub.link.take() if isinstance(x, P.Publish)]
        assert window, "the subscriber has nothing to acknowledge, yet publishers are held"
        got += [m.payload for m in window]
        for m in window:
            sub.send(P.Puback(m.packet_id))
        now = count_acks()
        if now != before and rounds_with_progress < 3:  # the first reliefs: every publisher advanced
            assert all(now[name] > before[name] for name in now), (before, now)
            rounds_with_progress += 1
        before = now
    got += ack_all(sub)
    assert sorted(got) == sorted(f"{n}-{i}".encode() for n in ("p1", "p2", "p3") for i in range(30))


def test_replacing_the_webhooks_does_not_release_a_subscriber_that_holds() -> None:
    from mqhook.events import EventRouter

    broker, _ = make_broker()
    router = EventRouter("mqhook@test", broker.hooks, broker.backpressure, [])
    subscriber(broker, window=2)
    pub = Client(broker)
    pub.connect("pub")
    for i in range(10):
        pub.send(P.Publish("t/x", b"%d" % i, 1, packet_id=i + 1))
    assert pub.conn.holding
    router.set_consumers([])  # a webhook change: the subscriber's hold is not the router's to end
    assert pub.conn.holding and broker.gauges()["subscribers_behind"] == 1
