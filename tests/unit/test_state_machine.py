"""The connection state machine without sockets: every (state, packet) pair, QoS flows, sessions, wills."""

from __future__ import annotations

from typing import Any

import pytest

from mqhook.broker.connection import AWAIT_CONNECT, CLOSED, CONNECTED, LEGAL
from mqhook.errors import ProtocolError
from mqhook.mqtt import packets as P

from .brokerkit import Client, make_broker


def sample(ptype: int) -> Any:
    return {
        P.CONNECT: P.Connect("again", proto_level=5),
        P.CONNACK: P.Connack(),
        P.PUBLISH: P.Publish("a/b", b"x", 1, packet_id=7),
        P.PUBACK: P.Puback(7),
        P.PUBREC: P.Pubrec(7),
        P.PUBREL: P.Pubrel(7),
        P.PUBCOMP: P.Pubcomp(7),
        P.SUBSCRIBE: P.Subscribe(3, [P.Subscription("a/#", 1)]),
        P.SUBACK: P.Suback(3, [0]),
        P.UNSUBSCRIBE: P.Unsubscribe(4, ["a/#"]),
        P.UNSUBACK: P.Unsuback(4, [0]),
        P.PINGREQ: P.Pingreq(),
        P.PINGRESP: P.Pingresp(),
        P.DISCONNECT: P.Disconnect(),
        P.AUTH: P.Auth(0x18, {"Authentication-Method": "x"}),
    }[ptype]


def client_in(state: int) -> Client:
    broker, _ = make_broker()
    c = Client(broker)
    if state != AWAIT_CONNECT:
        c.connect("sm")
    if state == CLOSED:
        c.conn.handle(P.Disconnect())
    assert c.conn.state == state
    return c


@pytest.mark.parametrize("state", [AWAIT_CONNECT, CONNECTED, CLOSED])
@pytest.mark.parametrize("ptype", range(1, 16))
def test_every_state_packet_pair_transitions_or_is_a_protocol_error(state: int, ptype: int) -> None:
    c = client_in(state)
    packet = sample(ptype)
    if state == CLOSED:
        c.conn.handle(packet)  # ignored: nothing is processed after the close
        assert c.link.take() == [] and c.conn.state == CLOSED
        return
    if ptype in LEGAL[state] and ptype != P.AUTH:
        c.conn.handle(packet)
        assert c.conn.state in (CONNECTED, CLOSED)
        return
    with pytest.raises(ProtocolError) as info:
        c.conn.handle(packet)
    assert info.value.reason_code == 0x82


def test_second_connect_is_a_protocol_error_and_v5_gets_disconnect_0x82() -> None:
    c = client_in(CONNECTED)
    c.send(P.Connect("again", proto_level=5))
    (disconnect,) = c.link.take()
    assert isinstance(disconnect, P.Disconnect) and disconnect.reason_code == 0x82
    assert "second CONNECT" in disconnect.properties["Reason-String"]
    assert c.link.closed and c.conn.state == CLOSED


def test_qos2_inbound_exactly_once_and_unknown_pubrel() -> None:
    broker, _ = make_broker()
    sub = Client(broker)
    sub.connect("sub")
    sub.send(P.Subscribe(1, [P.Subscription("q/#", 2)]))
    sub.link.take()
    pub = Client(broker)
    pub.connect("pub")
    pub.send(P.Publish("q/1", b"once", 2, packet_id=5))
    pub.send(P.Publish("q/1", b"once", 2, dup=True, packet_id=5))  # retransmission before PUBREL
    assert [type(x) for x in pub.link.take()] == [P.Pubrec, P.Pubrec]
    got = [x for x in sub.link.take() if isinstance(x, P.Publish)]
    assert len(got) == 1 and got[0].payload == b"once"
    pub.send(P.Pubrel(5))
    (comp,) = pub.link.take()
    assert isinstance(comp, P.Pubcomp) and comp.reason_code == 0
    pub.send(P.Pubrel(99))
    (comp,) = pub.link.take()
    assert comp.reason_code == 0x92
    assert broker.stats.messages_dropped["packet_identifier_inuse"] == 1


def test_outbound_window_and_queue_bound() -> None:
    broker, _ = make_broker(max_queued_messages=3)
    sub = Client(broker)
    sub.connect("win", properties={"Receive-Maximum": 2})
    sub.send(P.Subscribe(1, [P.Subscription("w", 1)]))
    sub.link.take()
    pub = Client(broker)
    pub.connect("p")
    for i in range(10):
        pub.send(P.Publish("w", str(i).encode(), 1, packet_id=i + 1))
    first = [x for x in sub.link.take() if isinstance(x, P.Publish)]
    assert [x.payload for x in first] == [b"0", b"1"]  # window of 2
    assert broker.stats.deliveries_dropped["queue_full"] == 5  # 10 - 2 inflight - 3 queued
    sub.send(P.Puback(first[0].packet_id))
    (nxt,) = sub.link.take()
    assert nxt.payload == b"2"


def test_packet_ids_wrap_and_skip_ids_in_use() -> None:
    broker, _ = make_broker()
    sub = Client(broker)
    sub.connect("wrap")
    session = sub.conn.session
    assert session is not None
    session.next_pid = 65535
    sub.send(P.Subscribe(1, [P.Subscription("z", 1)]))
    pub = Client(broker)
    pub.connect("zp")
    pub.send(P.Publish("z", b"a", 1, packet_id=1))
    pub.send(P.Publish("z", b"b", 1, packet_id=2))
    ids = [x.packet_id for x in sub.link.take() if isinstance(x, P.Publish)]
    assert ids == [65535, 1]


def test_will_delay_and_session_expiry_on_a_manual_clock() -> None:
    broker, clock = make_broker()
    watcher = Client(broker)
    watcher.connect("watch")
    watcher.send(P.Subscribe(1, [P.Subscription("will/#", 0)]))
    watcher.link.take()
    dying = Client(broker)
    will = P.Will("will/x", b"gone", 0, False, {"Will-Delay-Interval": 5})
    dying.connect("dying", will=will, properties={"Session-Expiry-Interval": 60})
    dying.conn.connection_lost()  # abnormal close
    clock.advance(4)
    assert watcher.link.take() == []
    clock.advance(2)
    (msg,) = watcher.link.take()
    assert msg.payload == b"gone"
    assert "dying" in broker.sessions
    clock.advance(60)
    assert "dying" not in broker.sessions


def test_reconnect_within_will_delay_cancels_the_will() -> None:
    broker, clock = make_broker()
    watcher = Client(broker)
    watcher.connect("w2")
    watcher.send(P.Subscribe(1, [P.Subscription("will/#", 0)]))
    watcher.link.take()
    c = Client(broker)
    c.connect(
        "back",
        clean=False,
        will=P.Will("will/y", b"x", properties={"Will-Delay-Interval": 5}),
        properties={"Session-Expiry-Interval": 60},
    )
    c.conn.connection_lost()
    again = Client(broker)
    ack = again.connect("back", clean=False, properties={"Session-Expiry-Interval": 60})
    assert ack.session_present
    clock.advance(10)
    assert watcher.link.take() == []


def test_takeover_sends_0x8e_to_the_old_connection() -> None:
    broker, _ = make_broker()
    old = Client(broker)
    old.connect("same")
    new = Client(broker)
    new.connect("same")
    (d,) = old.link.take()
    assert isinstance(d, P.Disconnect) and d.reason_code == 0x8E and old.link.closed
    assert broker.stats.disconnects["discarded"] == 1
