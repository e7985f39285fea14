"""mqtt.durable_sessions in the core and the store: the journal's change records (what a collect
reports, and only that), the SQLite store's round trip, and the service's restore and last flush."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path
from typing import Any

from mqhook.broker.session import AWAIT_COMP
from mqhook.mqtt import packets as P
from mqhook.persist.service import DurableSessions
from mqhook.persist.store import SessionStore, wall_offset

from .brokerkit import Client, make_broker

EXPIRY = {"Session-Expiry-Interval": 3600}


def persistent(broker: Any, client_id: str, props: dict[str, Any] | None = None) -> tuple[Client, P.Connack]:
    """A client with clean_start = 0; what came after the CONNACK stays in ``c.link`` to take."""
    c = Client(broker)
    c.send(P.Connect(client_id, proto_level=5, clean_start=False, properties=dict(props or EXPIRY)))
    ack = c.link.received.pop(0)
    assert isinstance(ack, P.Connack)
    return c, ack


def subscribe(c: Client, topic: str, qos: int = 1, sub_id: int | None = None) -> None:
    props = {"Subscription-Identifier": sub_id} if sub_id is not None else {}
    c.send(P.Subscribe(1, [P.Subscription(topic, qos)], props))
    c.link.take()


def publish(broker: Any, topic: str, n: int, qos: int = 1, **kw: Any) -> None:
    pub = Client(broker)
    pub.connect("pub-" + topic)
    for i in range(n):
        pub.send(P.Publish(topic, f"m{i}".encode(), qos=qos, packet_id=i + 1 if qos else None, **kw))
    pub.send(P.Disconnect())


def kinds(ops: list[tuple[Any, ...]]) -> list[str]:
    return [op[0] for op in ops]


def test_off_by_default_nothing_is_journaled() -> None:
    broker, _ = make_broker()
    c, _ = persistent(broker, "a")
    assert broker.journal is None and c.conn.session is not None and c.conn.session.dirty is None
    assert broker.gauges()["durable_unflushed"] == 0


def test_collect_reports_only_what_changed() -> None:
    broker, _ = make_broker(durable_sessions=True)
    journal = broker.journal
    assert journal is not None
    c, _ = persistent(broker, "s")
    subscribe(c, "t", sub_id=5)
    c.send(P.Disconnect())
    ops = journal.collect()
    assert kinds(ops) == ["session", "sub"]
    assert ops[0][1:4] == ("s", 3600, broker.clock.time() + 3600)
    assert journal.collect() == []  # nothing changed since
    publish(broker, "t", 3)
    ops = journal.collect()
    assert kinds(ops) == ["queue"]
    _, cid, first, entries = ops[0]
    assert (cid, first, [e[0].payload for e in entries]) == ("s", 0, [b"m0", b"m1", b"m2"])
    publish(broker, "t", 2)
    (op,) = journal.collect()
    assert op[2] == 3 and len(op[3]) == 2  # only the two new entries, numbered on
    # The client comes back: the queue moves to the window; the session is online (no expiry time).
    c2, ack = persistent(broker, "s")
    assert ack.session_present
    sent = [p for p in c2.link.take() if isinstance(p, P.Publish)]
    assert len(sent) == 5
    ops = journal.collect()
    assert kinds(ops) == ["session", "trim", *["inflight"] * 5]
    assert ops[0][3] is None and ops[1] == ("trim", "s", 5)
    c2.send(P.Puback(sent[0].packet_id))
    assert journal.collect() == [("unflight", "s", sent[0].packet_id)]


def test_messages_passing_between_collects_are_never_reported() -> None:
    broker, _ = make_broker(durable_sessions=True)
    journal = broker.journal
    assert journal is not None
    c, _ = persistent(broker, "s")
    subscribe(c, "t")
    journal.collect()
    publish(broker, "t", 1)
    (pub,) = [p for p in c.link.take() if isinstance(p, P.Publish)]
    c.send(P.Puback(pub.packet_id))
    assert journal.collect() == []


def test_sessions_without_expiry_are_not_kept_and_ended_ones_dropped() -> None:
    broker, _ = make_broker(durable_sessions=True)
    journal = broker.journal
    assert journal is not None
    clean = Client(broker)
    clean.connect("zero")
    subscribe(clean, "t")
    c, _ = persistent(broker, "s")
    assert {op[1] for op in journal.collect() if op[0] == "session"} == {"s"}
    c.send(P.Disconnect())
    fresh = Client(broker)
    fresh.connect("s", clean=True)  # ends the kept session; the new one has expiry 0
    assert journal.collect() == [("drop", "s")]


def test_retained_changes() -> None:
    broker, _ = make_broker(durable_sessions=True)
    journal = broker.journal
    assert journal is not None
    publish(broker, "r", 1, retain=True)
    (op,) = [o for o in journal.collect() if o[0] == "retain"]
    assert op[1] == "r" and op[2].payload == b"m0"
    pub = Client(broker)
    pub.connect("p")
    pub.send(P.Publish("r", b"", qos=0, retain=True))
    assert ("unretain", "r") in journal.collect()


def test_store_round_trip_restores_the_session(tmp_path: Path) -> None:
    broker, clock = make_broker(durable_sessions=True)
    journal = broker.journal
    assert journal is not None
    c, _ = persistent(broker, "s", {"Session-Expiry-Interval": 100})
    subscribe(c, "t", qos=2, sub_id=9)
    props = {"User-Property": [("k", "v")], "Correlation-Data": b"\x00\xff", "Message-Expiry-Interval": 500}
    publish(broker, "t", 2, qos=2, properties=props)
    sent = [p for p in c.link.take() if isinstance(p, P.Publish)]
    c.send(P.Pubrec(sent[1].packet_id))  # m1 awaits PUBCOMP; m0 awaits PUBREC
    c.send(P.Publish("in", b"x", qos=2, packet_id=77))  # awaits our client's PUBREL
    c.send(P.Disconnect())
    publish(broker, "t", 1, qos=1)  # queued
    clock.advance(10)
    store = SessionStore(tmp_path)
    store.open()
    store.apply(journal.collect(), wall_offset(clock.time()))
    store.close()

    broker2, clock2 = make_broker(durable_sessions=True)
    clock2.advance(5000)  # another clock entirely: times are carried as wall-clock time
    store = SessionStore(tmp_path)
    store.open()
    (loaded,), retained = store.load(wall_offset(clock2.time()))
    store.close()
    assert retained == []
    assert 89 < loaded.expires_at - time.time() <= 90
    assert loaded.awaiting_rel == [77]
    assert {pid: e[4] for pid, e in loaded.inflight.items()} == {sent[0].packet_id: 0, sent[1].packet_id: AWAIT_COMP}
    msg = loaded.inflight[sent[0].packet_id][0]
    assert msg.properties == props and msg.expiry_at is not None
    assert 489 < msg.expiry_at - clock2.time() <= 490
    broker2.restore_session(
        loaded.client_id,
        loaded.expiry_interval,
        loaded.expires_at - time.time(),
        loaded.subscriptions,
        loaded.queue,
        loaded.first_seq,
        loaded.inflight,
        loaded.awaiting_rel,
    )
    assert broker2.journal is not None and broker2.journal.collect() == []  # what it holds is on disk
    c2, ack = persistent(broker2, "s", {"Session-Expiry-Interval": 100})
    assert ack.session_present
    out = c2.link.take()
    pubs = [p for p in out if isinstance(p, P.Publish)]
    rels = [p for p in out if isinstance(p, P.Pubrel)]
    assert [(p.payload, p.dup, p.qos) for p in pubs] == [(b"m0", True, 2), (b"m0", False, 1)]
    assert pubs[0].properties["Subscription-Identifier"] == [9]
    assert [r.packet_id for r in rels] == [sent[1].packet_id]
    c2.send(P.Pubrel(77))
    assert c2.link.take()[-1].reason_code == 0  # PUBCOMP success: the packet id was known
    # The restored session expires on the new clock: after the time left, it is gone.
    c2.send(P.Disconnect())
    clock2.advance(100)
    assert "s" not in broker2.sessions


def test_load_renumbers_a_queue_with_gaps(tmp_path: Path) -> None:
    broker, clock = make_broker(durable_sessions=True)
    journal = broker.journal
    assert journal is not None
    c, _ = persistent(broker, "s")
    subscribe(c, "t")
    c.send(P.Disconnect())
    publish(broker, "t", 3)
    store = SessionStore(tmp_path)
    store.open()
    store.apply(journal.collect(), wall_offset(clock.time()))
    store.close()
    db = sqlite3.connect(tmp_path / "sessions.db")
    db.execute("DELETE FROM queue WHERE seq = 1")
    db.commit()
    db.close()
    store = SessionStore(tmp_path)
    store.open()
    (loaded,), _ = store.load(0.0)
    assert [e[0].payload for e in loaded.queue] == [b"m0", b"m2"] and loaded.first_seq == 0
    (again,), _ = store.load(0.0)
    assert again.first_seq == 0 and len(again.queue) == 2
    store.close()


def test_failed_write_resyncs_everything() -> None:
    broker, _ = make_broker(durable_sessions=True)
    journal = broker.journal
    assert journal is not None
    c, _ = persistent(broker, "s")
    subscribe(c, "t")
    publish(broker, "r", 1, retain=True)
    journal.collect()
    journal.resync()
    ops = journal.collect()
    assert ops[0] == ("wipe",)
    assert {"session", "sub", "retain"} <= set(kinds(ops))


def test_service_restores_and_flushes_at_close(tmp_path: Path) -> None:
    async def first() -> None:
        broker, _ = make_broker(durable_sessions=True)
        svc = DurableSessions(broker, str(tmp_path), interval=0.01)
        await svc.restore()
        c, _ = persistent(broker, "s")
        subscribe(c, "t")
        c.send(P.Disconnect())
        publish(broker, "t", 4)
        publish(broker, "r", 1, retain=True)
        await svc.close()  # no interval waited: close writes the rest
        assert broker.stats.durable["flushes"] >= 1

    async def second() -> None:
        broker, _ = make_broker(durable_sessions=True)
        svc = DurableSessions(broker, str(tmp_path))
        await svc.restore()
        assert broker.stats.durable["restored_sessions"] == 1
        assert broker.stats.durable["restored_retained"] == 1
        c, ack = persistent(broker, "s")
        assert ack.session_present
        assert [p.payload for p in c.link.take() if isinstance(p, P.Publish)] == [b"m0", b"m1", b"m2", b"m3"]
        await svc.close()

    asyncio.run(first())
    asyncio.run(second())
