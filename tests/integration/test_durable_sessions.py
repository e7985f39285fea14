"""mqtt.durable_sessions: retained messages and persistent sessions survive a restart.

Real broker processes on one data directory: SIGTERM (a clean stop, everything written) or SIGKILL
after the store said everything was written (``durable_unflushed`` 0 in /api/v1/stats).
"""

from __future__ import annotations

import signal
import sqlite3
import time
from contextlib import closing
from pathlib import Path

import msgspec

from .rawmqtt import (
    P_MESSAGE_EXPIRY,
    P_SESSION_EXPIRY,
    P_SUBSCRIPTION_ID,
    PUBACK,
    PUBCOMP,
    PUBREC,
    PUBREL,
    ack_packet,
    parse_ack,
    parse_publish,
    publish_packet,
    sub_options,
)
from .util import wait_until

DURABLE = "[mqtt]\ndurable_sessions = true\n"
EXPIRY = [(P_SESSION_EXPIRY, 3600)]


def restart(broker, old, sig=signal.SIGTERM, config=DURABLE):
    """Stop ``old`` with ``sig`` and start a broker on the same data directory."""
    rc = old.stop(sig)
    if sig == signal.SIGTERM:
        assert rc == 0, old.stderr_text()
    return broker(config, data_dir=old.data_dir)


def time_passes(data_dir: Path, seconds: float) -> None:
    """``seconds`` go by while the broker is stopped: every absolute time in its store (they are
    wall-clock times, the broker's clock across a restart) moves that much into the past."""
    dec, enc = msgspec.msgpack.Decoder(), msgspec.msgpack.Encoder()

    def earlier(msg: list) -> list:  # a stored message: [topic, payload, qos, retain, props, sender, expiry, ...]
        if msg[6] is not None:
            msg[6] -= seconds
        return msg

    with closing(sqlite3.connect(Path(data_dir) / "sessions.db")) as db, db:
        db.execute("UPDATE sessions SET expires_at = expires_at - ? WHERE expires_at IS NOT NULL", (seconds,))
        db.execute("UPDATE sessions SET will_at = will_at - ? WHERE will_at IS NOT NULL", (seconds,))
        for topic, blob in db.execute("SELECT topic, msg FROM retained").fetchall():
            db.execute("UPDATE retained SET msg = ? WHERE topic = ?", (enc.encode(earlier(dec.decode(blob))), topic))
        for table, key in (("queue", "seq"), ("inflight", "pid")):
            for cid, k, blob in db.execute(f"SELECT client_id, {key}, entry FROM {table}").fetchall():
                entry = dec.decode(blob)
                entry[0] = earlier(entry[0])
                db.execute(
                    f"UPDATE {table} SET entry = ? WHERE client_id = ? AND {key} = ?", (enc.encode(entry), cid, k)
                )


def stored_expiry(data_dir: Path, sql: str, *args: object) -> float:
    with closing(sqlite3.connect(Path(data_dir) / "sessions.db")) as db:
        return db.execute(sql, args).fetchone()[0]


def flushed(b):
    """Wait until the broker says every change is on disk."""
    assert wait_until(lambda: b.stats()["durable_unflushed"] == 0, timeout=5, interval=0.05)


def persistent(raw, b, client_id, expiry=EXPIRY):
    c = raw(b, version=5)
    ack = c.connect(client_id, clean=False, properties=expiry)
    assert ack.rc == 0
    return c, ack


def offline_subscriber(raw, b, uid, topic, qos=1, sub_id=None):
    c, ack = persistent(raw, b, uid)
    assert ack.session_present is False
    props = [(P_SUBSCRIPTION_ID, sub_id)] if sub_id is not None else None
    assert c.subscribe([(topic, sub_options(qos))], properties=props) == [qos]
    c.disconnect()
    c.wait_closed(3)


def publish_all(raw, b, uid, topic, n, qos=1):
    pub = raw(b, version=5)
    assert pub.connect(uid + "-pub").rc == 0
    for i in range(n):
        pub.publish(topic, f"m{i}".encode(), qos=qos, pid=i + 1)
    pub.disconnect()


def receive_in_order(c, n, qos=1):
    """``n`` PUBLISHes, each flow completed (QoS 2: PUBREC, then PUBCOMP for its PUBREL)."""
    got = []
    released = 0
    while len(got) < n or (qos == 2 and released < n):
        pkt = c.recv()
        if pkt.type == PUBREL:
            released += 1
            c.send(ack_packet(PUBCOMP, parse_ack(pkt, 5)[0], 5))
            continue
        m = parse_publish(pkt, 5)
        got.append(m)
        c.send(ack_packet(PUBACK if qos == 1 else PUBREC, m.pid, 5))
    return got


def test_retained_messages_survive_a_restart(broker, raw, uid):
    b = broker(DURABLE)
    pub = raw(b, version=5)
    assert pub.connect(uid + "-pub").rc == 0
    pub.publish(f"{uid}/a", b"A", qos=1, retain=True)
    pub.publish(f"{uid}/b", b"B0", qos=0, retain=True)
    pub.publish(f"{uid}/b", b"B", qos=1, pid=2, retain=True)  # replaces B0
    pub.publish(f"{uid}/c", b"C", qos=1, pid=3, retain=True)
    pub.publish(f"{uid}/c", b"", qos=1, pid=4, retain=True)  # clears c
    published = time.time()
    pub.publish(f"{uid}/x", b"X", qos=1, pid=5, retain=True, properties=[(P_MESSAGE_EXPIRY, 1)])
    pub.disconnect()
    assert b.stop() == 0, b.stderr_text()
    blob = stored_expiry(b.data_dir, "SELECT msg FROM retained WHERE topic = ?", f"{uid}/x")
    assert published < msgspec.msgpack.decode(blob)[6] < time.time() + 1  # stored as a wall-clock time
    time_passes(b.data_dir, 2.0)  # x expires while the broker is down
    b2 = broker(DURABLE, data_dir=b.data_dir)
    assert b2.stats()["durable_sessions"]["restored_retained"] == 2
    sub = raw(b2, version=5)
    assert sub.connect(uid + "-sub").rc == 0
    sub.subscribe(f"{uid}/#", qos=1)
    got = sorted((m.topic, m.payload, m.retain) for m in (sub.recv_publish(), sub.recv_publish()))
    assert got == [(f"{uid}/a", b"A", True), (f"{uid}/b", b"B", True)]
    sub.assert_silent(0.3)


def test_queued_messages_survive_sigterm(broker, raw, uid):
    topic = f"{uid}/t"
    b = broker(DURABLE)
    offline_subscriber(raw, b, uid, topic, sub_id=7)
    publish_all(raw, b, uid, topic, 50)
    b2 = restart(broker, b)
    assert b2.stats()["sessions"] == 1
    c, ack = persistent(raw, b2, uid)
    assert ack.session_present is True
    got = receive_in_order(c, 50)
    assert [m.payload for m in got] == [f"m{i}".encode() for i in range(50)]
    assert all(m.qos == 1 and m.dup is False for m in got)
    assert got[0].props.get(P_SUBSCRIPTION_ID) == 7
    # the subscription came back too
    publish_all(raw, b2, uid + "-2", topic, 1)
    assert c.recv_publish().payload == b"m0"


def test_queued_messages_survive_sigkill_once_flushed(broker, raw, uid):
    topic = f"{uid}/t"
    b = broker(DURABLE)
    offline_subscriber(raw, b, uid, topic, qos=2)
    publish_all(raw, b, uid, topic, 30, qos=2)
    flushed(b)
    assert b.stats()["durable_sessions"]["changes_flushed"] > 0
    b2 = restart(broker, b, signal.SIGKILL)
    c, ack = persistent(raw, b2, uid)
    assert ack.session_present is True
    got = receive_in_order(c, 30, qos=2)
    assert [m.payload for m in got] == [f"m{i}".encode() for i in range(30)]
    assert all(m.qos == 2 for m in got)
    c.ping()
    c.assert_silent(0.3)


def test_inflight_resent_with_dup_after_restart(broker, raw, uid):
    topic = f"{uid}/t"
    b = broker(DURABLE)
    c, _ = persistent(raw, b, uid)
    c.subscribe([(topic, sub_options(1))])
    c.subscribe([(f"{uid}/q2", sub_options(2))], pid=2)
    publish_all(raw, b, uid, topic, 2)
    first = [c.recv_publish(), c.recv_publish()]
    c.send(ack_packet(PUBACK, first[0].pid, 5))  # m0 acknowledged, m1 not
    publish_all(raw, b, uid + "-2", f"{uid}/q2", 1, qos=2)
    q2 = c.recv_publish()
    c.send(ack_packet(PUBREC, q2.pid, 5))
    assert parse_ack(c.expect(PUBREL), 5)[0] == q2.pid  # no PUBCOMP: the PUBREL is resent
    flushed(b)
    b2 = restart(broker, b, signal.SIGKILL)
    c2, ack = persistent(raw, b2, uid)
    assert ack.session_present is True
    again = c2.recv_publish()
    assert (again.payload, again.dup, again.pid, again.qos) == (b"m1", True, first[1].pid, 1)
    assert parse_ack(c2.expect(PUBREL), 5)[0] == q2.pid
    c2.send(ack_packet(PUBACK, again.pid, 5))
    c2.send(ack_packet(PUBCOMP, q2.pid, 5))
    c2.ping()
    c2.assert_silent(0.3)


def test_awaiting_pubrel_survives_a_restart(broker, raw, uid):
    b = broker(DURABLE)
    c, _ = persistent(raw, b, uid)
    c.send(publish_packet(f"{uid}/t", b"x", qos=2, pid=9))
    assert parse_ack(c.expect(PUBREC), 5) == (9, 0x10)  # no subscribers, still awaiting PUBREL
    c.close()
    b2 = restart(broker, b)
    c2, ack = persistent(raw, b2, uid)
    assert ack.session_present is True
    c2.send(ack_packet(PUBREL, 9, 5))
    assert parse_ack(c2.expect(PUBCOMP), 5) == (9, 0)  # known: not 0x92 (packet identifier not found)


def test_expired_session_does_not_come_back(broker, raw, uid):
    topic = f"{uid}/t"
    b = broker(DURABLE)
    c, _ = persistent(raw, b, uid, expiry=[(P_SESSION_EXPIRY, 2)])
    c.subscribe(topic, qos=1)
    left = time.time()
    c.disconnect()
    c.wait_closed(3)
    keep, _ = persistent(raw, b, uid + "-keep")  # expiry 3600: stays
    keep.disconnect()
    b.stop()  # expiry of uid counts while the broker is down
    at = stored_expiry(b.data_dir, "SELECT expires_at FROM sessions WHERE client_id = ?", uid)
    assert left + 1 < at < time.time() + 2  # stored as a wall-clock time: about left + 2
    time_passes(b.data_dir, 3.0)
    b2 = broker(DURABLE, data_dir=b.data_dir)
    stats = b2.stats()
    assert stats["durable_sessions"]["expired_at_restore"] == 1
    assert stats["sessions"] == 1
    _c2, ack = persistent(raw, b2, uid)
    assert ack.session_present is False
    _k, ack = persistent(raw, b2, uid + "-keep")
    assert ack.session_present is True


def test_session_ended_by_clean_start_is_forgotten(broker, raw, uid):
    topic = f"{uid}/t"
    b = broker(DURABLE)
    offline_subscriber(raw, b, uid, topic)
    fresh = raw(b, version=5)
    assert fresh.connect(uid, clean=True).rc == 0  # ends the session; expiry 0: not kept either
    fresh.disconnect()
    fresh.wait_closed(3)
    b2 = restart(broker, b)
    assert b2.stats()["sessions"] == 0
    _c, ack = persistent(raw, b2, uid)
    assert ack.session_present is False


def test_nothing_written_when_off(broker, raw, uid):
    b = broker()
    c, _ = persistent(raw, b, uid)
    c.subscribe(f"{uid}/t", qos=1)
    c.disconnect()
    publish_all(raw, b, uid, f"{uid}/t", 3)
    pub = raw(b, version=5)
    assert pub.connect(uid + "-r").rc == 0
    pub.publish(f"{uid}/r", b"R", qos=1, retain=True)
    assert b.stats()["durable_sessions"]["flushes"] == 0
    assert b.stop() == 0
    assert not (b.data_dir / "sessions.db").exists()
    b2 = broker(data_dir=b.data_dir)
    _c2, ack = persistent(raw, b2, uid)
    assert ack.session_present is False
