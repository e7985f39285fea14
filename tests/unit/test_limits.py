"""The limits of README "Limits", on the broker's clock, without sockets: what each one does when
it bites, to the client concerned only, and that it is counted (``Stats.limits``)."""

from __future__ import annotations

from typing import Any

import pytest

from mqhook.broker.connection import CLOSED, Connection
from mqhook.broker.settings import AliasBytes, MessageBytes, RetainedBytes
from mqhook.mqtt import codec
from mqhook.mqtt import packets as P
from mqhook.mqtt import reason as R
from mqhook.mqtt.codec import Decoder
from mqhook.mqtt.encode import encode

from .brokerkit import Client, FakeLink, make_broker


def connected(broker: Any, client_id: str, level: int = 5, **kw: Any) -> Client:
    c = Client(broker, level)
    assert c.connect(client_id, **kw).reason_code == R.SUCCESS
    return c


def publishes(c: Client) -> list[bytes]:
    return [p.payload for p in c.link.take() if isinstance(p, P.Publish)]


# -- messages_rate and bytes_rate ------------------------------------------------------------------


def test_over_messages_rate_the_client_is_not_read_until_its_next_window_and_nothing_is_dropped() -> None:
    broker, clock = make_broker(messages_rate=10)
    sub = connected(broker, "sub")
    sub.send(P.Subscribe(1, [P.Subscription("t/#", 0)]))
    sub.link.take()
    pub = connected(broker, "pub")
    for i in range(10):
        pub.send(P.Publish("t/1", b"%d" % i))
    assert pub.link.reading and broker.stats.limits["messages_rate"] == 0
    pub.send(P.Publish("t/1", b"10"))  # the 11th of this second: handled, then reading stops
    assert not pub.link.reading
    assert broker.stats.limits["messages_rate"] == 1 and broker.gauges()["paused_rate_limit"] == 1
    assert publishes(sub) == [b"%d" % i for i in range(11)]
    clock.advance(0.99)
    assert not pub.link.reading
    clock.advance(0.01)  # the next window: read on, with the one overdrawn paid for
    assert pub.link.reading and broker.gauges()["paused_rate_limit"] == 0
    for _ in range(9):
        pub.send(P.Publish("t/1", b"x"))
    assert pub.link.reading
    pub.send(P.Publish("t/1", b"x"))
    assert not pub.link.reading and broker.stats.limits["messages_rate"] == 2


def test_a_quiet_client_is_never_paused_and_no_timer_is_armed() -> None:
    broker, clock = make_broker(messages_rate=5)
    pub = connected(broker, "pub", keepalive=0)
    for _ in range(20):
        clock.advance(0.25)
        pub.send(P.Publish("t", b"x"))
    assert pub.link.reading and broker.stats.limits["messages_rate"] == 0 and clock.pending() == []


def test_over_bytes_rate_a_large_message_pays_for_the_windows_it_takes() -> None:
    broker, clock = make_broker(bytes_rate=MessageBytes(1000))
    pub = connected(broker, "pub", keepalive=0)
    pub.send(P.Publish("t", b"x" * 3499))  # 3500 bytes with its topic: this window's 1000 and 2500 more
    assert not pub.link.reading and broker.stats.limits["bytes_rate"] == 1
    assert broker.stats.limits["messages_rate"] == 0
    clock.advance(2.99)
    assert not pub.link.reading
    clock.advance(0.01)  # three windows: this one's allowance and two more, less the 500 still owed
    assert pub.link.reading
    pub.send(P.Publish("t", b"x" * 498))  # 499 of the 500 left
    assert pub.link.reading
    pub.send(P.Publish("t", b"x"))
    assert not pub.link.reading and broker.stats.limits["bytes_rate"] == 2


def test_a_rate_limited_client_slows_no_other_client() -> None:
    broker, _clock = make_broker(messages_rate=2)
    fast = connected(broker, "fast")
    other = connected(broker, "other")
    for _ in range(3):
        fast.send(P.Publish("t", b"x"))
    assert not fast.link.reading
    other.send(P.Publish("t", b"x"))
    other.send(P.Publish("t", b"x"))
    assert other.link.reading and broker.gauges()["paused_rate_limit"] == 1


def test_the_keepalive_does_not_count_the_time_the_broker_did_not_read() -> None:
    broker, clock = make_broker(bytes_rate=MessageBytes(1024))
    pub = connected(broker, "pub", keepalive=2)  # closed after 3 s of silence
    pub.send(P.Publish("t", b"x" * 10_000))  # ~9 windows without reading
    clock.advance(8.0)
    assert pub.conn.state != CLOSED and not pub.link.reading
    clock.advance(2.0)
    assert pub.link.reading


def test_a_closed_rate_limited_connection_leaves_no_gauge_and_no_timer() -> None:
    broker, clock = make_broker(messages_rate=1)
    pub = connected(broker, "pub", keepalive=0)
    pub.send(P.Publish("t", b"1"))
    pub.send(P.Publish("t", b"2"))
    assert broker.gauges()["paused_rate_limit"] == 1
    pub.send(P.Disconnect())
    assert broker.gauges()["paused_rate_limit"] == 0 and clock.pending() == []


# -- max_conn_rate_per_address --------------------------------------------------------------------


def new_connection(broker: Any, peername: str) -> tuple[Connection, FakeLink]:
    link = FakeLink(5, broker.clock)
    link.peername = peername
    return Connection(broker, link), link


def test_connections_beyond_the_rate_of_one_address_are_closed_before_connect() -> None:
    broker, clock = make_broker(max_conn_rate_per_address=3)
    for port in range(3):
        assert not new_connection(broker, f"10.0.0.1:{port}")[1].closed
    conn, link = new_connection(broker, "10.0.0.1:9")
    assert link.closed and conn.state == CLOSED
    assert broker.stats.closed_before_connect["connection_rate_exceeded"] == 1
    assert broker.stats.limits["max_conn_rate_per_address"] == 1
    conn.connection_lost()
    assert broker.sockets == 3
    assert not new_connection(broker, "10.0.0.2:1")[1].closed  # another address: its own bucket
    clock.advance(0.34)  # a third of a second: one more
    assert not new_connection(broker, "10.0.0.1:10")[1].closed
    assert new_connection(broker, "10.0.0.1:11")[1].closed


def test_the_address_buckets_are_forgotten_once_full_again() -> None:
    broker, clock = make_broker(max_conn_rate_per_address=100)
    for i in range(1000):
        new_connection(broker, f"10.1.{i // 256}.{i % 256}:1")
    assert len(broker._conn_buckets) == 1000
    clock.advance(6.0)
    new_connection(broker, "10.9.9.9:1")
    assert len(broker._conn_buckets) == 1


# -- max_subscriptions ------------------------------------------------------------------------------


@pytest.mark.parametrize(("level", "refused"), [(5, R.QUOTA_EXCEEDED), (4, 0x80)])
def test_subscriptions_beyond_max_subscriptions_are_refused(level: int, refused: int) -> None:
    broker, _ = make_broker(max_subscriptions=2)
    c = connected(broker, "c", level)
    c.send(P.Subscribe(1, [P.Subscription("a", 0), P.Subscription("b", 1), P.Subscription("c", 0)]))
    (ack,) = c.link.take()
    assert isinstance(ack, P.Suback) and ack.reason_codes == [0, 1, refused]
    c.send(P.Subscribe(2, [P.Subscription("a", 1)]))  # replacing one is no new subscription
    assert c.link.take()[0].reason_codes == [1]
    c.send(P.Unsubscribe(3, ["b"]))
    c.send(P.Subscribe(4, [P.Subscription("c", 0)]))
    assert c.link.take()[-1].reason_codes == [0]
    assert broker.stats.limits["max_subscriptions"] == 1 and broker.subscription_count == 2
    other = connected(broker, "other", level)  # the bound is per client
    other.send(P.Subscribe(1, [P.Subscription("a", 0), P.Subscription("b", 0)]))
    assert other.link.take()[0].reason_codes == [0, 0]


# -- max_topic_levels and max_topic_length ----------------------------------------------------------


@pytest.mark.parametrize(
    ("topic", "limit"),
    [("a/b/c/d", "max_topic_levels"), ("0123456789a", "max_topic_length"), ("\u00e9" * 6, "max_topic_length")],
)
def test_a_publish_topic_over_a_limit_closes_the_connection(topic: str, limit: str) -> None:
    broker, _ = make_broker(max_topic_levels=3, max_topic_length=10)
    v5 = connected(broker, "v5")
    v5.send(P.Publish("a/b/c", b"ok"))
    v5.send(P.Publish("0123456789", b"ok"))
    v5.send(P.Publish("\u00e9" * 5, b"ok"))  # 10 bytes
    assert v5.conn.state != CLOSED
    v5.send(P.Publish(topic, b"x"))
    assert v5.conn.state == CLOSED
    (disconnect,) = v5.link.take()
    assert isinstance(disconnect, P.Disconnect) and disconnect.reason_code == R.TOPIC_NAME_INVALID
    v4 = connected(broker, "v4", 4)
    v4.send(P.Publish(topic, b"x"))
    assert v4.conn.state == CLOSED and v4.link.take() == []
    assert broker.stats.limits[limit] == 2
    assert broker.stats.disconnects["topic_name_invalid"] == 2


@pytest.mark.parametrize("level", [5, 4])
def test_a_subscription_filter_over_a_limit_is_refused(level: int) -> None:
    broker, _ = make_broker(max_topic_levels=3, max_topic_length=20)
    c = connected(broker, "c", level)
    filters = ["a/b/c", "a/b/+/#", "$share/g/a/b/c", "x" * 21, "a/+/#"]
    c.send(P.Subscribe(1, [P.Subscription(f, 0) for f in filters]))
    bad = R.TOPIC_FILTER_INVALID if level == 5 else 0x80
    assert c.link.take()[0].reason_codes == [0, bad, 0, bad, 0]
    assert broker.stats.limits["max_topic_levels"] == 1 and broker.stats.limits["max_topic_length"] == 1
    assert c.conn.state != CLOSED


# -- max_topic_alias_bytes ------------------------------------------------------------------------


def test_inbound_topic_aliases_beyond_their_bytes_close_the_connection_with_0x94() -> None:
    broker, _ = make_broker(max_topic_alias_bytes=AliasBytes(2048), max_topic_length=65535)
    c = connected(broker, "c")
    c.send(P.Publish("a" * 1000, b"1", properties={"Topic-Alias": 1}))
    c.send(P.Publish("b" * 1000, b"2", properties={"Topic-Alias": 1}))  # replaces: still 1000 held
    c.send(P.Publish("c" * 1000, b"3", properties={"Topic-Alias": 2}))
    c.send(P.Publish("", b"4", properties={"Topic-Alias": 2}))
    assert c.conn.state != CLOSED and c.link.take() == []
    c.send(P.Publish("d" * 100, b"5", properties={"Topic-Alias": 3}))
    (disconnect,) = c.link.take()
    assert isinstance(disconnect, P.Disconnect) and disconnect.reason_code == R.TOPIC_ALIAS_INVALID
    assert c.conn.state == CLOSED and broker.stats.limits["max_topic_alias_bytes"] == 1


# -- max_retained_messages and max_retained_bytes --------------------------------------------------------------


def test_a_new_retained_topic_beyond_max_retained_messages_is_not_retained_but_routed() -> None:
    broker, _ = make_broker(max_retained_messages=2)
    sub = connected(broker, "sub")
    sub.send(P.Subscribe(1, [P.Subscription("r/#", 0)]))
    sub.link.take()
    pub = connected(broker, "pub")
    for topic in ("r/1", "r/2", "r/3"):
        pub.send(P.Publish(topic, topic.encode(), retain=True))
    assert publishes(sub) == [b"r/1", b"r/2", b"r/3"]
    assert len(broker.retained) == 2 and broker.retained.get("r/3") is None
    assert broker.stats.limits["max_retained_messages"] == 1
    pub.send(P.Publish("r/1", b"new", retain=True))  # replacing is no new one
    pub.send(P.Publish("r/2", b"", retain=True))  # clearing frees a place
    pub.send(P.Publish("r/3", b"r/3", retain=True))
    assert sorted(m.payload for m in broker.retained_for("r/#")) == [b"new", b"r/3"]
    assert broker.stats.limits["max_retained_messages"] == 1
    assert broker.retained_bytes == len("r/1new") + len("r/3r/3")


def test_retained_bytes_are_bounded_and_follow_replacements_deletions_and_expiry() -> None:
    broker, clock = make_broker(max_retained_bytes=RetainedBytes(2048))
    pub = connected(broker, "pub")
    pub.send(P.Publish("a", b"x" * 999, retain=True))
    pub.send(P.Publish("b", b"x" * 999, retain=True, properties={"Message-Expiry-Interval": 5}))
    assert broker.retained_bytes == 2000
    pub.send(P.Publish("c", b"x" * 99, retain=True))  # 2100: not retained
    pub.send(P.Publish("a", b"x" * 1099, retain=True))  # a replacement growing past the bound: neither
    assert broker.stats.limits["max_retained_bytes"] == 2
    assert broker.retained.get("c") is None and len(broker.retained.get("a").payload) == 999  # type: ignore[union-attr]
    pub.send(P.Publish("a", b"x" * 9, retain=True))
    assert broker.retained_bytes == 1010
    clock.advance(6)
    assert [m.topic for m in broker.retained_for("#")] == ["a"] and broker.retained_bytes == 10
    pub.send(P.Publish("a", b"", retain=True))
    assert broker.retained_bytes == 0 and broker.gauges()["retained_bytes"] == 0


# -- max_sessions --------------------------------------------------------------------------------


@pytest.mark.parametrize(("level", "refused"), [(5, R.QUOTA_EXCEEDED), (4, R.SERVER_UNAVAILABLE)])
def test_a_new_session_beyond_max_sessions_is_refused_with_a_connack(level: int, refused: int) -> None:
    """3.1.1's CONNACK says 3 (server unavailable), which the client-side decoder reads as 0x88."""
    broker, _ = make_broker(max_sessions=2)
    a = connected(broker, "a", level, clean=False, properties={"Session-Expiry-Interval": 60} if level == 5 else None)
    a.conn.handle(P.Disconnect())  # its session stays
    assert a.conn.state == CLOSED and "a" in broker.sessions
    connected(broker, "b", level)
    c = Client(broker, level)
    ack = c.connect("c")
    assert ack.reason_code == refused and c.conn.state == CLOSED and c.link.closed
    assert "c" not in broker.sessions and len(broker.sessions) == 2
    assert broker.stats.limits["max_sessions"] == 1 and broker.stats.connects["quota_exceeded"] == 1
    again = Client(broker, level)  # an existing session is no new one
    assert again.connect("a", clean=False).reason_code == R.SUCCESS
    assert broker.stats.limits["max_sessions"] == 1


# -- the codec's topic cache ---------------------------------------------------------------------


def test_the_topic_cache_is_bounded_by_bytes_and_keeps_no_long_names() -> None:
    decoder = Decoder(protocol_level=4)
    codec._TOPICS.clear()
    codec._topics_bytes = 0
    for i in range(3000):
        decoder.feed(encode(P.Publish(f"{i:04d}/" + "x" * 995, b""), 4))
        assert codec._topics_bytes <= codec._TOPICS_MAX_BYTES
        assert sum(len(k) for k in codec._TOPICS) == codec._topics_bytes
    (packet,) = decoder.feed(encode(P.Publish("y" * 2000, b""), 4))
    assert packet.topic == "y" * 2000 and b"y" * 2000 not in codec._TOPICS
