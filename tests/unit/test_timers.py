"""Everything timed in the broker core, on the broker's clock: the keepalive, the CONNECT deadline,
session expiry, the will delay and message expiry.

Time passes only through ``ManualClock.advance``, never by sleeping, so each test states the exact
boundary: open at ``t - EPS``, closed (gone, published, dropped) at ``t``. ``EPS`` is a power of
two, so ``1000 + 15 - EPS`` and ``1000 + 15`` are exact floats and no rounding blurs a boundary.

The last tests run the real TCP edge (``mqhook.server.tcp.MqttProtocol``) on 127.0.0.1 with a
broker on the manual clock: bytes arriving on a real socket count for the keepalive, and do not
move the CONNECT deadline.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from mqhook.broker.connection import AWAIT_CONNECT, CLOSED, CONNECTED
from mqhook.mqtt import packets as P
from mqhook.mqtt.codec import Decoder
from mqhook.mqtt.encode import encode
from mqhook.server.tcp import MqttProtocol

from .brokerkit import Client, ManualClock, make_broker
from .test_event_router import FakeSink
from .test_events import RecordingSink, route

EPS = 2.0**-10  # "a little": exact in binary, so every boundary below is hit exactly
NEVER = 0xFFFFFFFF  # Session Expiry Interval: the session does not expire (section 3.1.2.11.2)


def is_open(c: Client) -> bool:
    return c.conn.state == CONNECTED and not c.link.closed


def is_closed(c: Client) -> bool:
    return c.conn.state == CLOSED and c.link.closed


def publishes(packets: list[Any]) -> list[P.Publish]:
    return [x for x in packets if isinstance(x, P.Publish)]


def expiry_of(pub: P.Publish) -> int | None:
    value: int | None = pub.properties.get("Message-Expiry-Interval")
    return value


# ---------------------------------------------------------------------------------------------- keepalive
# [MQTT-3.1.2-22]: no packet from the client within 1.5 x Keep Alive: the server closes the
# connection. v5 says why first: DISCONNECT 0x8D Keep Alive timeout (section 3.14.2.1).


@pytest.mark.parametrize("level", [4, 5])
def test_keepalive_closes_at_exactly_one_and_a_half_times_the_keepalive(level: int) -> None:
    broker, clock = make_broker()
    c = Client(broker, level)
    clock.advance(3)  # accepted at 1000, CONNECT at 1003: the keepalive counts from the CONNECT
    c.connect("ka", keepalive=10)
    clock.advance(15 - EPS)
    assert is_open(c) and c.link.take() == []
    assert broker.stats.disconnects["keepalive_timeout"] == 0
    clock.advance(EPS)
    assert is_closed(c)
    got = c.link.take()
    if level == 5:
        assert [(type(x), x.reason_code) for x in got] == [(P.Disconnect, 0x8D)]
    else:
        assert got == []  # 3.1.1 has no DISCONNECT from the server
    assert broker.stats.disconnects["keepalive_timeout"] == 1
    assert broker.connections == set() and clock.pending() == []


@pytest.mark.parametrize(
    "packet",
    [P.Pingreq(), P.Publish("k/t", b"x", 0), P.Subscribe(1, [P.Subscription("k/#", 0)])],
    ids=["PINGREQ", "PUBLISH", "SUBSCRIBE"],
)
def test_any_packet_at_14s_pushes_the_deadline_to_15s_after_it(packet: Any) -> None:
    broker, clock = make_broker()
    c = Client(broker)
    c.connect("ka", keepalive=10)  # t = 0
    clock.advance(14)
    c.send(packet)
    c.link.take()
    clock.advance(1)  # 15 s after the CONNECT, 1 s after the packet
    assert is_open(c)
    clock.advance(14 - EPS)  # 15 s after the packet, minus a little
    assert is_open(c) and c.link.take() == []
    clock.advance(EPS)
    assert is_closed(c)
    assert broker.stats.disconnects["keepalive_timeout"] == 1


def test_bytes_of_an_unfinished_packet_count_as_traffic() -> None:
    """The check reads when bytes last arrived (``Link.last_rx``), not when a packet completed."""
    broker, clock = make_broker()
    c = Client(broker)
    c.feed(encode(P.Connect("ka", proto_level=5, keepalive=10), 5))
    assert isinstance(c.link.take()[0], P.Connack)
    publish = encode(P.Publish("k/t", b"payload", 0), 5)
    clock.advance(14)
    c.feed(publish[:3])
    clock.advance(15 - EPS)
    assert is_open(c)
    c.feed(publish[3:])  # completes the PUBLISH at 29 - EPS
    clock.advance(15 - EPS)
    assert is_open(c)
    clock.advance(EPS)
    assert is_closed(c)


def test_a_client_pinging_every_14s_on_a_10s_keepalive_stays_for_an_hour() -> None:
    broker, clock = make_broker()
    c = Client(broker)
    c.connect("pinger", keepalive=10)
    for _ in range(3600 // 14):
        clock.advance(14)
        c.send(P.Pingreq())
        assert [type(x) for x in c.link.take()] == [P.Pingresp]
    assert is_open(c)
    assert broker.stats.disconnects["keepalive_timeout"] == 0


@pytest.mark.parametrize("level", [4, 5])
def test_keepalive_zero_never_closes(level: int) -> None:
    """Keep Alive 0 turns the mechanism off (section 3.1.2.10); the CONNECT deadline is over too."""
    broker, clock = make_broker(idle_timeout=0.5)
    c = Client(broker, level)
    c.connect("quiet", keepalive=0)
    assert clock.pending() == []  # no timer of any kind left for this connection
    clock.advance(7 * 24 * 3600)
    assert is_open(c) and c.link.take() == []
    assert broker.stats.disconnects["keepalive_timeout"] == 0
    c.send(P.Pingreq())
    assert [type(x) for x in c.link.take()] == [P.Pingresp]


def test_max_keepalive_cuts_the_interval_the_check_uses() -> None:
    broker, clock = make_broker(max_keepalive=10)
    c = Client(broker)
    c.send(P.Connect("long", proto_level=5, keepalive=60))
    (ack,) = c.link.take()
    assert ack.properties["Server-Keep-Alive"] == 10  # [MQTT-3.2.2-21]
    clock.advance(15 - EPS)
    assert is_open(c)
    clock.advance(EPS)
    assert is_closed(c)


def test_no_keepalive_close_while_the_broker_does_not_read() -> None:
    """Backpressure: once a publisher's held packets pass HOLD_BYTES the broker stops reading it,
    and its packets wait in the socket; that silence is the broker's. Once reading resumes the
    client's own silence counts again."""
    sink = FakeSink(events=["message.publish"], high_water=1)
    broker, clock = make_broker()
    route(broker, sink)
    c = Client(broker)
    c.connect("held", keepalive=10)
    c.send(P.Publish("t", b"x", 0))
    assert c.conn.holding and c.link.reading  # held, but still read (its pings are served)
    for _ in range(5):
        c.send(P.Publish("t", b"x" * 60_000, 0))  # 300 kB held: past HOLD_BYTES
    assert not c.link.reading
    clock.advance(3600)
    assert is_open(c)
    sink.drain()  # relief: reading resumes at 3600 ...
    assert c.link.reading
    c.feed(encode(P.Pingreq(), 5))  # ... and the PINGREQ that waited in the socket is read
    clock.advance(15 - EPS)
    assert is_open(c)
    clock.advance(EPS)
    assert is_closed(c)
    assert broker.stats.disconnects["keepalive_timeout"] == 1


def test_keepalive_timeout_is_reported_as_client_disconnected_keepalive_timeout() -> None:
    sink = RecordingSink(events=["client.disconnected"])
    broker, clock = make_broker()
    route(broker, sink)
    c = Client(broker)
    c.connect("ka-event", keepalive=10)
    clock.advance(15 - EPS)
    assert sink.got == []
    clock.advance(EPS)
    (ev,) = sink.named("client.disconnected")
    assert (ev.clientid, ev.reason) == ("ka-event", "keepalive_timeout")


# ---------------------------------------------------------------------------------------------- CONNECT deadline
# mqtt.idle_timeout (EMQX): a connection that has not completed CONNECT within it is closed.


def test_connect_deadline_closes_a_silent_connection_at_idle_timeout() -> None:
    broker, clock = make_broker(idle_timeout=15)
    c = Client(broker)
    assert clock.pending() == [1015.0]
    clock.advance(15 - EPS)
    assert c.conn.state == AWAIT_CONNECT and not c.link.closed
    clock.advance(EPS)
    assert is_closed(c) and c.link.take() == []  # nothing to say: no CONNACK, no DISCONNECT
    assert broker.connections == set() and broker.sessions == {}
    assert sum(broker.stats.disconnects.values()) == 0  # it never connected


def test_connect_deadline_is_absolute_from_accept_while_connect_bytes_keep_arriving() -> None:
    broker, clock = make_broker(idle_timeout=15)
    c = Client(broker)
    data = encode(P.Connect("a-client-sending-slowly", proto_level=5), 5)
    assert len(data) > 16
    for i in range(15):  # one byte a second, at 0, 1, ... 14
        c.feed(data[i : i + 1])
        clock.advance(1 - EPS if i == 14 else 1)
    assert c.conn.state == AWAIT_CONNECT and not c.link.closed
    assert c.link.last_rx == 1014.0  # the bytes did arrive, 1 - EPS ago
    clock.advance(EPS)
    assert is_closed(c)
    c.feed(data[15:])  # the rest of the CONNECT, too late: not processed
    assert c.link.take() == [] and broker.sessions == {} and broker.stats.connects == {"success": 0}


def test_a_connect_completed_just_before_the_deadline_is_served() -> None:
    broker, clock = make_broker(idle_timeout=15)
    c = Client(broker)
    data = encode(P.Connect("just-in-time", proto_level=5, keepalive=0), 5)
    c.feed(data[:-1])
    clock.advance(15 - EPS)
    c.feed(data[-1:])
    (ack,) = c.link.take()
    assert isinstance(ack, P.Connack) and ack.reason_code == 0
    clock.advance(3600)
    assert is_open(c)


# ---------------------------------------------------------------------------------------------- session expiry
# Section 3.1.2.11.2: the session outlives the connection by the Session Expiry Interval (seconds);
# the server MUST keep it that long [MQTT-3.1.2-23]; 0xFFFFFFFF never expires.


def persistent(broker: Any, client_id: str, expiry: int = 60, level: int = 5, **kw: Any) -> Client:
    c = Client(broker, level)
    props = {"properties": {"Session-Expiry-Interval": expiry}} if level == 5 else {}
    ack = c.connect(client_id, clean=False, **props, **kw)
    assert ack.reason_code == 0
    return c


def resume(broker: Any, client_id: str, expiry: int = 60) -> tuple[P.Connack, list[Any], Client]:
    """Reconnect with Clean Start 0: the CONNACK and what the session sends after it."""
    c = Client(broker)
    c.send(P.Connect(client_id, proto_level=5, clean_start=False, properties={"Session-Expiry-Interval": expiry}))
    ack, *rest = c.link.take()
    assert isinstance(ack, P.Connack) and ack.reason_code == 0
    return ack, rest, c


def subscribed(broker: Any, client_id: str, topic: str, expiry: int = 60, qos: int = 1, **kw: Any) -> Client:
    c = persistent(broker, client_id, expiry, **kw)
    c.send(P.Subscribe(1, [P.Subscription(topic, qos)]))
    assert [type(x) for x in c.link.take()] == [P.Suback]
    return c


ENDINGS: dict[str, Callable[[Client], None]] = {
    "disconnect": lambda c: c.send(P.Disconnect()),
    "network": lambda c: c.conn.connection_lost(),
}


@pytest.mark.parametrize("ending", sorted(ENDINGS))
def test_session_ends_at_exactly_its_expiry_interval(ending: str) -> None:
    broker, clock = make_broker()
    c = subscribed(broker, "s", "s/t", expiry=60)
    ENDINGS[ending](c)
    assert is_closed(c)
    clock.advance(60 - EPS)
    assert "s" in broker.sessions and broker.subscription_count == 1
    clock.advance(EPS)
    assert "s" not in broker.sessions and broker.subscription_count == 0
    assert clock.pending() == []
    pub = Client(broker)
    pub.connect("p")
    pub.send(P.Publish("s/t", b"x", 1, packet_id=1))
    assert broker.stats.messages_dropped["no_subscribers"] == 1  # the subscription went with it
    ack, rest, _ = resume(broker, "s")
    assert ack.session_present is False and rest == []


def test_reconnect_before_expiry_keeps_the_session_and_cancels_its_timer() -> None:
    broker, clock = make_broker()
    c = subscribed(broker, "s", "s/t", expiry=60)
    c.conn.connection_lost()  # t = 0
    clock.advance(59)
    ack, _, again = resume(broker, "s")
    assert ack.session_present is True
    clock.advance(0.5)
    again.conn.connection_lost()  # t = 59.5: a new 60 s count starts here
    clock.advance(0.5)  # t = 60, when the first count would have ended
    assert "s" in broker.sessions
    clock.advance(59.5 - EPS)
    assert "s" in broker.sessions
    clock.advance(EPS)
    assert "s" not in broker.sessions


def test_session_of_a_connected_client_never_expires() -> None:
    broker, clock = make_broker()
    c = persistent(broker, "on", expiry=60, keepalive=0)
    clock.advance(86400)
    assert is_open(c) and broker.sessions["on"].conn is c.conn


def test_disconnect_can_shorten_the_expiry() -> None:
    broker, clock = make_broker()
    c = persistent(broker, "short", expiry=60)
    c.send(P.Disconnect(0, {"Session-Expiry-Interval": 5}))
    clock.advance(5 - EPS)
    assert "short" in broker.sessions
    clock.advance(EPS)
    assert "short" not in broker.sessions


def test_expiry_zero_ends_the_session_with_the_connection() -> None:
    broker, clock = make_broker()
    c = persistent(broker, "zero", expiry=0)
    c.conn.connection_lost()
    assert "zero" not in broker.sessions and clock.pending() == []


def test_expiry_is_cut_to_the_server_maximum_and_ends_there() -> None:
    broker, clock = make_broker(max_session_expiry_interval=120)
    c = Client(broker)
    c.send(P.Connect("capped", proto_level=5, clean_start=False, properties={"Session-Expiry-Interval": 1000}))
    (ack,) = c.link.take()
    assert ack.properties["Session-Expiry-Interval"] == 120  # section 3.2.2.3.2
    c.conn.connection_lost()
    clock.advance(120 - EPS)
    assert "capped" in broker.sessions
    clock.advance(EPS)
    assert "capped" not in broker.sessions


def test_a_311_persistent_session_lasts_the_server_maximum() -> None:
    broker, clock = make_broker(max_session_expiry_interval=120)
    c = persistent(broker, "old", level=4)
    c.conn.connection_lost()
    clock.advance(120 - EPS)
    assert "old" in broker.sessions
    clock.advance(EPS)
    assert "old" not in broker.sessions


def test_expiry_0xffffffff_never_ends() -> None:
    broker, clock = make_broker(max_session_expiry_interval=NEVER)
    c = persistent(broker, "forever", expiry=NEVER)
    c.conn.connection_lost()
    assert clock.pending() == []
    clock.advance(10 * 365 * 86400)
    assert "forever" in broker.sessions
    ack, _, _ = resume(broker, "forever", expiry=NEVER)
    assert ack.session_present is True


# ---------------------------------------------------------------------------------------------- will delay
# Section 3.1.3.2.2: the will is published Will Delay Interval after the connection ends, or when
# the session ends if that is sooner [MQTT-3.1.3-9]; a reconnect before then cancels it.


def watcher(broker: Any, client_id: str = "watch") -> Client:
    w = Client(broker)
    w.connect(client_id, keepalive=0)
    w.send(P.Subscribe(1, [P.Subscription("will/#", 1)]))
    w.link.take()
    return w


def dying(broker: Any, delay: int, expiry: int, **will_props: Any) -> Client:
    c = Client(broker)
    will = P.Will("will/x", b"gone", 1, False, {"Will-Delay-Interval": delay, **will_props})
    c.connect("dying", clean=False, will=will, keepalive=0, properties={"Session-Expiry-Interval": expiry})
    return c


def test_will_is_published_at_exactly_the_will_delay() -> None:
    broker, clock = make_broker()
    w = watcher(broker)
    c = dying(broker, delay=5, expiry=60)
    c.conn.connection_lost()  # abnormal close at t = 0
    clock.advance(5 - EPS)
    assert w.link.take() == []
    clock.advance(EPS)
    (msg,) = publishes(w.link.take())
    assert (msg.topic, msg.payload) == ("will/x", b"gone")
    assert "Will-Delay-Interval" not in msg.properties
    assert "dying" in broker.sessions  # the session outlives the will


def test_will_goes_out_when_the_session_ends_before_the_will_delay() -> None:
    broker, clock = make_broker()
    w = watcher(broker)
    c = dying(broker, delay=30, expiry=10)
    c.conn.connection_lost()
    clock.advance(10 - EPS)
    assert w.link.take() == [] and "dying" in broker.sessions
    clock.advance(EPS)
    assert [m.payload for m in publishes(w.link.take())] == [b"gone"]
    assert "dying" not in broker.sessions
    clock.advance(60)
    assert w.link.take() == []  # once only


def test_reconnect_just_before_the_will_delay_cancels_the_will() -> None:
    broker, clock = make_broker()
    w = watcher(broker)
    c = dying(broker, delay=5, expiry=60)
    c.conn.connection_lost()
    clock.advance(5 - EPS)
    ack, _, _ = resume(broker, "dying")
    assert ack.session_present is True
    clock.advance(3600)
    assert w.link.take() == []


def test_the_wills_message_expiry_counts_from_its_publication() -> None:
    broker, clock = make_broker()
    subscribed(broker, "late", "will/#").conn.connection_lost()  # offline: the will waits in its queue
    c = dying(broker, delay=5, expiry=60, **{"Message-Expiry-Interval": 10})
    c.conn.connection_lost()
    clock.advance(12)  # published at 5, so 7 s of its 10 are gone
    _, rest, _ = resume(broker, "late")
    (msg,) = publishes(rest)
    assert (msg.payload, expiry_of(msg)) == (b"gone", 3)


# ---------------------------------------------------------------------------------------------- message expiry
# Section 3.3.2.3.3: a copy not yet sent when the Message Expiry Interval has passed is deleted
# [MQTT-3.3.2-5]; a copy sent later carries the interval minus the time it waited [MQTT-3.3.2-6].


def publisher(broker: Any) -> Client:
    p = Client(broker)
    p.connect("pub", keepalive=0)
    return p


def publish(p: Client, payload: bytes, expiry: int, pid: int, retain: bool = False) -> None:
    p.send(P.Publish("m/t", payload, 1, retain, packet_id=pid, properties={"Message-Expiry-Interval": expiry}))
    assert [type(x) for x in p.link.take()] == [P.Puback]


@pytest.mark.parametrize(
    ("waited", "expected"),
    [(0, 5), (2, 3), (2.5, 3), (5 - EPS, 1)],
    ids=["at-once", "2s", "2.5s", "just-before-5s"],
)
def test_a_queued_message_is_delivered_with_the_interval_decremented(waited: float, expected: int) -> None:
    broker, clock = make_broker()
    subscribed(broker, "sub", "m/#").conn.connection_lost()
    publish(publisher(broker), b"m", expiry=5, pid=1)
    clock.advance(waited)
    _, rest, _ = resume(broker, "sub")
    (msg,) = publishes(rest)
    assert (msg.payload, expiry_of(msg)) == (b"m", expected)
    assert broker.stats.deliveries_dropped["expired"] == 0


def test_a_queued_message_expires_at_exactly_its_interval_and_is_reported() -> None:
    sink = RecordingSink(events=["message.publish", "message.delivered", "delivery.dropped"])
    broker, clock = make_broker()
    route(broker, sink)
    subscribed(broker, "sub", "m/#").conn.connection_lost()
    pub = publisher(broker)
    publish(pub, b"short", expiry=5, pid=1)
    publish(pub, b"long", expiry=100, pid=2)
    clock.advance(5)
    _, rest, _ = resume(broker, "sub")
    (msg,) = publishes(rest)
    assert (msg.payload, expiry_of(msg)) == (b"long", 95)
    assert broker.stats.deliveries_dropped["expired"] == 1
    short_id = next(e.id for e in sink.named("message.publish") if e.payload == "short")
    (dropped,) = sink.named("delivery.dropped")
    assert (dropped.reason, dropped.clientid, dropped.from_clientid) == ("expired", "sub", "pub")
    assert (dropped.id, dropped.topic, dropped.payload, dropped.qos) == (short_id, "m/t", "short", 1)
    assert [e.payload for e in sink.named("message.delivered")] == ["long"]


def test_a_message_waiting_for_the_inflight_window_expires_too() -> None:
    broker, clock = make_broker()
    sub = Client(broker)
    sub.connect("slow", keepalive=0, properties={"Receive-Maximum": 1})
    sub.send(P.Subscribe(1, [P.Subscription("m/#", 1)]))
    sub.link.take()
    pub = publisher(broker)
    publish(pub, b"first", expiry=5, pid=1)
    publish(pub, b"second", expiry=5, pid=2)  # queued behind "first": the window is 1
    (first,) = publishes(sub.link.take())
    assert first.packet_id is not None
    clock.advance(5)
    sub.send(P.Puback(first.packet_id))
    assert sub.link.take() == []
    assert broker.stats.deliveries_dropped["expired"] == 1


def test_an_expired_retained_message_is_not_delivered_and_is_removed() -> None:
    broker, clock = make_broker()
    pub = publisher(broker)
    publish(pub, b"old", expiry=5, pid=1, retain=True)
    pub.send(P.Publish("m/keep", b"keep", 1, True, packet_id=2))  # retained, no expiry
    assert broker.gauges()["retained"] == 2
    clock.advance(5 - EPS)
    early = Client(broker)
    early.connect("early")
    early.send(P.Subscribe(1, [P.Subscription("m/#", 1)]))
    got = {m.payload: (m.retain, expiry_of(m)) for m in publishes(early.link.take())}
    assert got == {b"old": (True, 1), b"keep": (True, None)}
    clock.advance(EPS)
    late = Client(broker)
    late.connect("late")
    late.send(P.Subscribe(1, [P.Subscription("m/#", 1)]))
    assert [(m.payload, m.retain) for m in publishes(late.link.take())] == [(b"keep", True)]
    assert broker.gauges()["retained"] == 1


# ---------------------------------------------------------------------------------------------- the real edge
# MqttProtocol on a real socket, the broker on the manual clock: the edge notes the clock's time
# whenever bytes arrive; that moves the keepalive, and not the CONNECT deadline.


class Edge:
    """A listener on 127.0.0.1 whose broker runs on a manual clock; keeps the protocols it made."""

    def __init__(self, **config: Any) -> None:
        self.broker, self.clock = make_broker(**config)
        self.protocols: list[MqttProtocol] = []
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> Edge:
        loop = asyncio.get_running_loop()

        def made() -> MqttProtocol:
            proto = MqttProtocol(self.broker, loop)
            self.protocols.append(proto)
            return proto

        self.server = await loop.create_server(made, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    async def client(self) -> Peer:
        assert self.server is not None
        port = self.server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await until(lambda: self.protocols)  # accepted: the CONNECT deadline runs from here
        return Peer(reader, writer, self.protocols[-1])


class Peer:
    """A raw MQTT 5 client on a real socket, and the server side's protocol for that socket."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, proto: MqttProtocol) -> None:
        self.reader, self.writer, self.proto = reader, writer, proto
        self.decoder = Decoder(protocol_level=5)
        self.got: list[Any] = []

    async def send(self, data: bytes) -> None:
        """Write, and wait until the server has read it (it notes the clock's time)."""
        clock = self.proto.broker.clock
        self.writer.write(data)
        await self.writer.drain()
        await until(lambda: self.proto.last_rx == clock.time())

    async def packet(self) -> Any:
        while not self.got:
            data = await self.reader.read(65536)
            assert data, "closed by the server"
            self.got.extend(self.decoder.feed(data))
        return self.got.pop(0)

    async def until_closed(self) -> list[Any]:
        """Everything the server sends until it closes the socket."""
        while data := await self.reader.read(65536):
            self.got.extend(self.decoder.feed(data))
        out, self.got = self.got, []
        return out

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


async def until(predicate: Callable[[], Any], timeout: float = 5.0) -> None:
    """Bounded wait for a condition of the server side, checked on every loop turn: ``sleep(0)``
    yields one turn (the loop polls the sockets), it lets no time pass."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0)


def run_edge(body: Callable[[Edge], Any], **config: Any) -> None:
    async def main() -> None:
        async with asyncio.timeout(20), Edge(**config) as edge:
            await body(edge)

    asyncio.run(main())


def test_bytes_on_a_real_socket_push_the_keepalive() -> None:
    async def body(edge: Edge) -> None:
        clock = edge.clock
        peer = await edge.client()
        await peer.send(encode(P.Connect("edge", proto_level=5, keepalive=10), 5))
        ack = await peer.packet()
        assert isinstance(ack, P.Connack) and ack.reason_code == 0
        conn = peer.proto.conn
        clock.advance(14)
        await peer.send(encode(P.Pingreq(), 5))
        assert isinstance(await peer.packet(), P.Pingresp)
        clock.advance(14)
        await peer.send(encode(P.Pingreq(), 5)[:1])  # half a PINGREQ at 28: bytes count, not packets
        clock.advance(15 - EPS)
        assert conn.state == CONNECTED and edge.broker.connections == {conn}
        clock.advance(EPS)
        assert conn.state == CLOSED
        got = await peer.until_closed()
        assert [(type(x), x.reason_code) for x in got] == [(P.Disconnect, 0x8D)]
        assert edge.broker.stats.disconnects["keepalive_timeout"] == 1
        await peer.close()

    run_edge(body)


def test_connect_deadline_on_a_real_socket_ignores_trickling_bytes() -> None:
    async def body(edge: Edge) -> None:
        clock = edge.clock
        peer = await edge.client()
        conn = peer.proto.conn
        data = encode(P.Connect("a-client-sending-slowly", proto_level=5), 5)
        for i in range(14):  # one byte a second, at 1 ... 14
            clock.advance(1)
            await peer.send(data[i : i + 1])
        clock.advance(1 - EPS)
        assert conn.state == AWAIT_CONNECT
        clock.advance(EPS)
        assert conn.state == CLOSED
        assert await peer.until_closed() == []  # closed without a packet
        assert edge.broker.sessions == {} and edge.broker.stats.connects == {"success": 0}
        await peer.close()

    run_edge(body, idle_timeout=15)


def test_manual_clock_runs_due_timers_in_order_and_skips_cancelled_ones() -> None:
    """The kit the tests above rely on."""
    clock = ManualClock()
    ran: list[str] = []
    clock.call_later(2, ran.append, "b")
    clock.call_later(1, ran.append, "a")
    clock.call_later(2, ran.append, "c")  # same time: in the order scheduled
    clock.call_later(1.5, ran.append, "x").cancel()
    assert clock.pending() == [1001.0, 1002.0, 1002.0]
    clock.advance(2 - EPS)
    assert ran == ["a"]
    clock.advance(EPS)
    assert ran == ["a", "b", "c"] and clock.now == 1002.0 and clock.pending() == []
