"""The connection state machine without sockets: every (state, packet) pair, QoS flows, sessions, wills.

The expected outcome of every (state, packet type) pair is written out below from the MQTT 5.0
specification, independently of the broker's own table: the test would catch a wrong one.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import pytest

from mqhook.broker.connection import AWAIT_CONNECT, CLOSED, CONNECTED
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


def client_in(state: int, level: int = 5) -> Client:
    """A connection in ``state``; CLOSED is reached by a normal DISCONNECT after CONNECT."""
    broker, _ = make_broker()
    c = Client(broker, level)
    if state != AWAIT_CONNECT:
        c.connect("sm")
    if state == CLOSED:
        c.conn.handle(P.Disconnect())
    assert c.conn.state == state
    return c


# -- the expected table, from the MQTT 5.0 specification --------------------------------------------
#
# A packet is either processed (the connection moves to ``then`` and writes ``writes``) or it is a
# Protocol Error: ``handle`` raises ProtocolError 0x82, changing nothing, and the edge then closes
# the connection [MQTT-4.13.1-1] (``protocol_error``), after a DISCONNECT 0x82 to a connected v5
# client (section 4.13.2; before CONNACK nothing is sent). CONNACK, SUBACK, UNSUBACK and PINGRESP
# flow from server to client only (section 2.1.2, Table 2-1): one of them from a client is a
# Protocol Error. The broker supports no enhanced authentication, so every CONNECT here has no
# Authentication Method.

ERROR = -1  # ``then`` of a Protocol Error


class Row(NamedTuple):
    then: int  # the state after the packet, or ERROR
    writes: tuple[tuple[Any, ...], ...]  # what the broker writes, as shape() sees it
    why: str


def shape(packet: Any) -> tuple[Any, ...]:
    """A packet the broker wrote, reduced to what the table states."""
    name = P.PACKET_NAMES[packet.type]
    if isinstance(packet, P.Connack):
        return (name, packet.session_present, packet.reason_code)
    if isinstance(packet, (P.Puback, P.Pubrec, P.Pubrel, P.Pubcomp)):
        return (name, packet.packet_id, packet.reason_code)
    if isinstance(packet, (P.Suback, P.Unsuback)):
        return (name, packet.packet_id, list(packet.reason_codes))
    if isinstance(packet, P.Disconnect):
        return (name, packet.reason_code)
    return (name,)


BEFORE_CONNECT = "[MQTT-3.1.0-1] the first packet from the client MUST be CONNECT"
SERVER_ONLY = "section 2.1.2 Table 2-1: {} flows from server to client only"
AFTER_CLOSE = "after DISCONNECT the client MUST NOT send more [MQTT-3.14.4-1]; closed: nothing is processed"
ERROR_CLOSE_V5 = (("DISCONNECT", 0x82),)  # what a connected v5 client gets after a Protocol Error

EXPECTED: dict[tuple[int, int], Row] = {
    # -- before CONNECT ------------------------------------------------------------------------------
    (AWAIT_CONNECT, P.CONNECT): Row(
        CONNECTED, (("CONNACK", False, 0x00),), "[MQTT-3.2.2-2] Clean Start 1: CONNACK 0x00, Session Present 0"
    ),
    (AWAIT_CONNECT, P.CONNACK): Row(ERROR, (), BEFORE_CONNECT),
    (AWAIT_CONNECT, P.PUBLISH): Row(ERROR, (), BEFORE_CONNECT),
    (AWAIT_CONNECT, P.PUBACK): Row(ERROR, (), BEFORE_CONNECT),
    (AWAIT_CONNECT, P.PUBREC): Row(ERROR, (), BEFORE_CONNECT),
    (AWAIT_CONNECT, P.PUBREL): Row(ERROR, (), BEFORE_CONNECT),
    (AWAIT_CONNECT, P.PUBCOMP): Row(ERROR, (), BEFORE_CONNECT),
    (AWAIT_CONNECT, P.SUBSCRIBE): Row(ERROR, (), BEFORE_CONNECT),
    (AWAIT_CONNECT, P.SUBACK): Row(ERROR, (), BEFORE_CONNECT),
    (AWAIT_CONNECT, P.UNSUBSCRIBE): Row(ERROR, (), BEFORE_CONNECT),
    (AWAIT_CONNECT, P.UNSUBACK): Row(ERROR, (), BEFORE_CONNECT),
    (AWAIT_CONNECT, P.PINGREQ): Row(ERROR, (), BEFORE_CONNECT),
    (AWAIT_CONNECT, P.PINGRESP): Row(ERROR, (), BEFORE_CONNECT),
    (AWAIT_CONNECT, P.DISCONNECT): Row(ERROR, (), BEFORE_CONNECT),
    (AWAIT_CONNECT, P.AUTH): Row(ERROR, (), BEFORE_CONNECT + " (AUTH continues a CONNECT, section 4.12)"),
    # -- connected (CONNECT had no Authentication Method) --------------------------------------------
    (CONNECTED, P.CONNECT): Row(ERROR, ERROR_CLOSE_V5, "[MQTT-3.1.0-2] a second CONNECT is a Protocol Error"),
    (CONNECTED, P.CONNACK): Row(ERROR, ERROR_CLOSE_V5, SERVER_ONLY.format("CONNACK")),
    (CONNECTED, P.PUBLISH): Row(
        CONNECTED,
        (("PUBACK", 7, 0x10),),
        "[MQTT-4.3.2-4] PUBACK with its id; 0x10 No matching subscribers (section 3.4.2.1)",
    ),
    (CONNECTED, P.PUBACK): Row(
        CONNECTED, (), "section 4.3.2: no flow to the client has id 7: nothing ends, nothing answers"
    ),
    (CONNECTED, P.PUBREC): Row(
        CONNECTED, (("PUBREL", 7, 0x92),), "section 3.6.2.1: PUBREL 0x92 Packet Identifier not found"
    ),
    (CONNECTED, P.PUBREL): Row(
        CONNECTED, (("PUBCOMP", 7, 0x92),), "section 3.7.2.1: PUBCOMP 0x92 Packet Identifier not found"
    ),
    (CONNECTED, P.PUBCOMP): Row(
        CONNECTED, (), "section 4.3.3: no flow to the client has id 7: nothing ends, nothing answers"
    ),
    (CONNECTED, P.SUBSCRIBE): Row(
        CONNECTED, (("SUBACK", 3, [1]),), "[MQTT-3.8.4-1] SUBACK, same id [MQTT-3.8.4-2], QoS 1 granted (3.9.3)"
    ),
    (CONNECTED, P.SUBACK): Row(ERROR, ERROR_CLOSE_V5, SERVER_ONLY.format("SUBACK")),
    (CONNECTED, P.UNSUBSCRIBE): Row(
        CONNECTED, (("UNSUBACK", 4, [0x11]),), "[MQTT-3.10.4-5] UNSUBACK; 0x11 No subscription existed (3.11.3)"
    ),
    (CONNECTED, P.UNSUBACK): Row(ERROR, ERROR_CLOSE_V5, SERVER_ONLY.format("UNSUBACK")),
    (CONNECTED, P.PINGREQ): Row(CONNECTED, (("PINGRESP",),), "[MQTT-3.12.4-1] the server MUST answer PINGRESP"),
    (CONNECTED, P.PINGRESP): Row(ERROR, ERROR_CLOSE_V5, SERVER_ONLY.format("PINGRESP")),
    (CONNECTED, P.DISCONNECT): Row(CLOSED, (), "section 3.14.4: the server closes, sending nothing"),
    (CONNECTED, P.AUTH): Row(
        ERROR, ERROR_CLOSE_V5, "[MQTT-4.12.0-7] no AUTH from a client whose CONNECT had no Authentication Method"
    ),
    # -- closed ----------------------------------------------------------------------------------------
    **{(CLOSED, ptype): Row(CLOSED, (), AFTER_CLOSE) for ptype in range(1, 16)},
}

STATE_NAMES = {AWAIT_CONNECT: "await_connect", CONNECTED: "connected", CLOSED: "closed"}
PAIRS = sorted(EXPECTED)


def test_the_table_covers_every_state_and_packet_type() -> None:
    assert set(EXPECTED) == {(state, ptype) for state in STATE_NAMES for ptype in range(1, 16)}


def observable(c: Client) -> tuple[Any, ...]:
    """Whatever processing a packet would change outside the connection."""
    broker = c.conn.broker
    return (broker.stats.snapshot(), broker.gauges(), sorted(broker.sessions))


@pytest.mark.parametrize(("state", "ptype"), PAIRS, ids=[f"{STATE_NAMES[s]}-{P.PACKET_NAMES[t]}" for s, t in PAIRS])
def test_every_state_packet_pair_behaves_as_the_spec_table_says(state: int, ptype: int) -> None:
    row = EXPECTED[(state, ptype)]
    c = client_in(state)
    before = observable(c)
    packet = sample(ptype)
    if row.then == ERROR:
        with pytest.raises(ProtocolError) as info:
            c.conn.handle(packet)
        assert info.value.reason_code == 0x82, row.why
        assert c.conn.state == state and c.link.take() == [] and observable(c) == before, row.why
        c.conn.protocol_error(info.value)  # what the server edge does with it
        assert c.conn.state == CLOSED and c.link.closed, row.why
    else:
        c.conn.handle(packet)
        assert c.conn.state == row.then, row.why
        assert c.link.closed == (row.then == CLOSED), row.why
        if state == CLOSED:
            assert observable(c) == before, row.why
    assert [shape(x) for x in c.link.take()] == list(row.writes), row.why


@pytest.mark.parametrize("ptype", range(1, 16), ids=[P.PACKET_NAMES[t] for t in range(1, 16)])
def test_a_connection_closed_before_its_connect_processes_nothing(ptype: int) -> None:
    """Closed by the CONNECT deadline: a CONNECT arriving later opens no session either."""
    broker, clock = make_broker(idle_timeout=1)
    c = Client(broker)
    clock.advance(1)
    assert c.conn.state == CLOSED and c.link.closed
    before = observable(c)
    c.conn.handle(sample(ptype))
    assert c.conn.state == CLOSED and c.link.take() == [] and observable(c) == before


@pytest.mark.parametrize(
    ("state", "ptype"),
    [pair for pair in PAIRS if EXPECTED[pair].then == ERROR],
    ids=[f"{STATE_NAMES[s]}-{P.PACKET_NAMES[t]}" for s, t in PAIRS if EXPECTED[(s, t)].then == ERROR],
)
def test_a_311_client_is_closed_without_a_packet_on_a_protocol_error(state: int, ptype: int) -> None:
    """The same errors for MQTT 3.1.1, where the server has no DISCONNECT to send (AUTH is a
    reserved type there: an error in every state)."""
    c = client_in(state, level=4)
    with pytest.raises(ProtocolError) as info:
        c.conn.handle(sample(ptype))
    assert info.value.reason_code == 0x82
    c.conn.protocol_error(info.value)
    assert c.conn.state == CLOSED and c.link.closed and c.link.take() == []


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
    broker, _ = make_broker(max_queued_messages=3, flow_control_timeout=0)  # no waiting publishers: the bound itself
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
