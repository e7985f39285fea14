"""Persistent sessions: session present, offline queueing, redelivery, expiry, queue bound, takeover."""

from __future__ import annotations

import pytest

from .pahoc import V5, V311
from .rawmqtt import (
    DISCONNECT,
    P_SESSION_EXPIRY,
    PUBACK,
    PUBCOMP,
    PUBREC,
    PUBREL,
    ack_packet,
    parse_ack,
    parse_disconnect,
)
from .util import wait_until

EXPIRY = [(P_SESSION_EXPIRY, 300)]


def persistent(raw, broker, client_id, version):
    """Raw client connected with a persistent session (v3.1.1 clean=0; v5 clean_start=0 + expiry 300)."""
    c = raw(broker, version=version)
    ack = c.connect(client_id, clean=False, **({"properties": EXPIRY} if version == 5 else {}))
    assert ack.rc == 0
    return c, ack


@pytest.mark.parametrize("version", [4, 5])
def test_offline_messages_delivered_on_reconnect(default_broker, raw, clients, uid, version):
    topic = f"{uid}/t"
    c, ack = persistent(raw, default_broker, uid, version)
    assert ack.session_present is False
    c.subscribe(topic, qos=1)
    c.disconnect()
    c.wait_closed(3)
    pub = clients(default_broker, uid + "-p")
    for i in range(3):
        pub.publish(topic, f"off{i}".encode(), qos=1)
    c2, ack2 = persistent(raw, default_broker, uid, version)
    assert ack2.session_present is True
    got = [c2.recv_publish() for _ in range(3)]
    assert [g.payload for g in got] == [b"off0", b"off1", b"off2"]
    assert all(g.qos == 1 for g in got)
    for g in got:
        c2.send(ack_packet(PUBACK, g.pid, version))
    # the subscription survived too
    pub.publish(topic, b"live", qos=1)
    assert c2.recv_publish().payload == b"live"


@pytest.mark.parametrize("version", [4, 5])
def test_unacked_qos1_redelivered_with_dup(default_broker, raw, clients, uid, version):
    topic = f"{uid}/t"
    c, _ = persistent(raw, default_broker, uid, version)
    c.subscribe(topic, qos=1)
    clients(default_broker, uid + "-p").publish(topic, b"m", qos=1)
    first = c.recv_publish()
    assert (first.payload, first.dup) == (b"m", False)
    c.close()  # no PUBACK, no DISCONNECT
    c2, ack = persistent(raw, default_broker, uid, version)
    assert ack.session_present is True
    again = c2.recv_publish()
    assert again.payload == b"m"
    assert again.dup is True
    assert again.pid == first.pid
    assert again.qos == 1
    c2.send(ack_packet(PUBACK, again.pid, version))
    c2.ping()
    c2.assert_silent(0.3)


@pytest.mark.parametrize("version", [4, 5])
def test_unacked_qos2_pubrel_resent(default_broker, raw, clients, uid, version):
    topic = f"{uid}/t"
    c, _ = persistent(raw, default_broker, uid, version)
    c.subscribe(topic, qos=2)
    clients(default_broker, uid + "-p").publish(topic, b"m2", qos=2)
    m = c.recv_publish()
    c.send(ack_packet(PUBREC, m.pid, version))
    assert parse_ack(c.expect(PUBREL), version)[0] == m.pid
    c.close()  # no PUBCOMP
    c2, ack = persistent(raw, default_broker, uid, version)
    assert ack.session_present is True
    rel = c2.expect(PUBREL)  # the PUBREL is resent, not the PUBLISH
    assert parse_ack(rel, version)[0] == m.pid
    c2.send(ack_packet(PUBCOMP, m.pid, version))
    c2.ping()
    c2.assert_silent(0.3)


@pytest.mark.parametrize("version", [4, 5])
def test_unacked_qos2_publish_redelivered(default_broker, raw, clients, uid, version):
    topic = f"{uid}/t"
    c, _ = persistent(raw, default_broker, uid, version)
    c.subscribe(topic, qos=2)
    clients(default_broker, uid + "-p").publish(topic, b"q2", qos=2)
    m = c.recv_publish()
    c.close()  # no PUBREC
    c2, _ = persistent(raw, default_broker, uid, version)
    again = c2.recv_publish()
    assert (again.payload, again.dup, again.pid, again.qos) == (b"q2", True, m.pid, 2)


def test_v311_clean_session_discards_state(default_broker, raw, clients, uid):
    topic = f"{uid}/t"
    c, _ = persistent(raw, default_broker, uid, 4)
    c.subscribe(topic, qos=1)
    c.disconnect()
    c.wait_closed(3)
    fresh = raw(default_broker, version=4)
    ack = fresh.connect(uid, clean=True)
    assert ack.session_present is False
    clients(default_broker, uid + "-p").publish(topic, b"x", qos=1)
    fresh.assert_silent(0.3)  # the subscription is gone
    fresh.disconnect()
    fresh.wait_closed(3)
    # and clean=1 left no session behind either
    _again, ack = persistent(raw, default_broker, uid, 4)
    assert ack.session_present is False


def test_v5_session_expiry_zero_discards_state_at_disconnect(default_broker, raw, clients, uid):
    topic = f"{uid}/t"
    c = raw(default_broker)
    assert c.connect(uid, clean=True).rc == 0  # no Session-Expiry-Interval: 0
    c.subscribe(topic, qos=1)
    c.disconnect()
    c.wait_closed(3)
    clients(default_broker, uid + "-p").publish(topic, b"x", qos=1)
    c2, ack = persistent(raw, default_broker, uid, 5)
    assert ack.session_present is False
    c2.assert_silent(0.3)


def test_v5_disconnect_can_shorten_session_expiry(default_broker, raw, uid):
    c, _ = persistent(raw, default_broker, uid, 5)
    c.send(b"\xe0\x07\x00\x05\x11\x00\x00\x00\x00")  # DISCONNECT, Session-Expiry-Interval 0
    c.wait_closed(3)
    _, ack = persistent(raw, default_broker, uid, 5)
    assert ack.session_present is False


# When a session expires (and that it is gone afterwards) is timing: tests/unit/test_timers.py.


def test_v5_session_within_expiry_is_present(default_broker, raw, uid):
    c = raw(default_broker)
    assert c.connect(uid, clean=False, properties=[(P_SESSION_EXPIRY, 5)]).rc == 0
    c.disconnect()
    c.wait_closed(3)
    ack = raw(default_broker).connect(uid, clean=False, properties=[(P_SESSION_EXPIRY, 5)])
    assert ack.session_present is True


def test_sessions_counted(broker, raw, uid):
    b = broker()
    c, _ = persistent(raw, b, uid, 5)
    c.disconnect()
    c.wait_closed(3)
    assert b.wait_stat(("connections",), lambda v: v == 0) == 0
    assert b.stat("sessions") == 1


def test_offline_queue_bound(broker, raw, clients, uid):
    b = broker("[mqtt]\nmax_queued_messages = 5\n")
    topic = f"{uid}/t"
    c, _ = persistent(raw, b, uid, 5)
    c.subscribe(topic, qos=1)
    c.disconnect()
    c.wait_closed(3)
    pub = clients(b, uid + "-p")
    for i in range(20):
        pub.publish(topic, f"{i}".encode(), qos=1)
    c2, ack = persistent(raw, b, uid, 5)
    assert ack.session_present is True
    got = []
    for _ in range(5):
        m = c2.recv_publish()
        got.append(m.payload)
        c2.send(ack_packet(PUBACK, m.pid))
    c2.assert_silent(0.5)
    assert len(got) == 5
    assert len(set(got)) == 5
    assert got in ([f"{i}".encode() for i in range(5)], [f"{i}".encode() for i in range(15, 20)]), got
    assert b.stat("deliveries_dropped", "queue_full") == 15


# ---------------------------------------------------------------------------- takeover
@pytest.mark.parametrize("clean", [False, True], ids=["resume", "clean-start"])
def test_v5_takeover_old_connection_gets_0x8e(broker, raw, uid, clean):
    b = broker()
    kw = {"clean": clean, "properties": EXPIRY}
    old = raw(b)
    assert old.connect(uid, **kw).rc == 0
    new = raw(b)
    assert new.connect(uid, **kw).rc == 0
    got = old.wait_closed(3)
    assert len(got) == 1, got
    assert got[0].type == DISCONNECT
    assert parse_disconnect(got[0])[0] == 0x8E
    new.ping()
    assert b.wait_stat(("connections",), lambda v: v == 1) == 1
    # EMQX names: "takenover" when the session is resumed, "discarded" when clean start drops it
    counters = ("takenover",) if not clean else ("takenover", "discarded")
    assert wait_until(lambda: sum(b.stat("disconnects", k) for k in counters) == 1), b.stats()["disconnects"]


def test_v311_takeover_old_connection_closed(default_broker, raw, uid):
    old = raw(default_broker, version=4)
    assert old.connect(uid).rc == 0
    new = raw(default_broker, version=4)
    assert new.connect(uid).rc == 0
    assert old.wait_closed(3) == []  # no DISCONNECT packet in 3.1.1
    new.ping()


@pytest.mark.parametrize("protocol", [V311, V5], ids=["v311", "v5"])
def test_takeover_carries_session(default_broker, clients, raw, uid, protocol):
    topic = f"{uid}/t"
    version = 5 if protocol == V5 else 4
    old, _ = persistent(raw, default_broker, uid, version)
    old.subscribe(topic, qos=1)
    new, ack = persistent(raw, default_broker, uid, version)
    assert ack.session_present is True
    old.wait_closed(3)
    clients(default_broker, uid + "-p").publish(topic, b"after", qos=1)
    m = new.recv_publish()
    assert m.payload == b"after"


def test_takeover_carries_inflight(default_broker, clients, raw, uid):
    topic = f"{uid}/t"
    old, _ = persistent(raw, default_broker, uid, 5)
    old.subscribe(topic, qos=1)
    clients(default_broker, uid + "-p").publish(topic, b"inflight", qos=1)
    first = old.recv_publish()
    new, ack = persistent(raw, default_broker, uid, 5)
    assert ack.session_present is True
    again = new.recv_publish()
    assert (again.payload, again.pid, again.dup) == (b"inflight", first.pid, True)


def test_takeover_with_clean_start_drops_session(default_broker, clients, raw, uid):
    topic = f"{uid}/t"
    old, _ = persistent(raw, default_broker, uid, 5)
    old.subscribe(topic, qos=1)
    new = raw(default_broker)
    ack = new.connect(uid, clean=True)
    assert ack.session_present is False
    old.wait_closed(3)
    clients(default_broker, uid + "-p").publish(topic, b"x", qos=1)
    new.assert_silent(0.3)
