"""mqhook.cluster.sessions without NATS: the KV keys, and a session handed from one broker core to
another (what a takeover request carries), with the will rules of a takeover."""

from __future__ import annotations

import re
from types import SimpleNamespace
from typing import Any

import pytest

pytest.importorskip("nats")

from mqhook.cluster.records import client_key, key_client, will_message
from mqhook.cluster.sessions import SessionOwners
from mqhook.mqtt import packets as P

from .brokerkit import Client, make_broker

_KEY = re.compile(r"[-/_=.A-Za-z0-9]+")


@pytest.mark.parametrize("cid", ["", "a", "a.b", "a b", "=", "=2E", ".", "*", ">", "é€", "x" * 50, "a/b/#", "\x00"])
def test_client_key_is_a_valid_key_and_round_trips(cid: str) -> None:
    key = client_key(cid)
    assert _KEY.fullmatch(key) and not key.endswith(".") and key.count(".") == 1
    assert key_client(key) == cid


def test_client_keys_are_distinct() -> None:
    ids = ["", "a", "a.b", "a=2Eb", "a b", "a=20b", "=", "==", "é", "=C3=A9", "A", "a-b", "a_b"]
    assert len({client_key(c) for c in ids}) == len(ids)


def test_a_very_long_client_id_is_hashed() -> None:
    key = client_key("é" * 2000)
    assert key.startswith("h.") and len(key) == 66 and key_client(key) is None
    assert client_key("é" * 2000) != client_key("é" * 1999 + "e")


def test_will_message_drops_the_delay_and_keeps_user_properties() -> None:
    from mqhook.cluster.records import encode_will

    will = P.Will("w/t", b"bye", 1, True, {"Will-Delay-Interval": 5, "User-Property": [("k", "v")]})
    msg = will_message("cid", encode_will(will, "user"), 100.0)
    assert (msg.topic, msg.payload, msg.qos, msg.retain, msg.sender, msg.username) == (
        "w/t",
        b"bye",
        1,
        True,
        "cid",
        "user",
    )
    assert msg.properties == {"User-Property": [("k", "v")]}


def owners_of(broker: Any, node: str) -> SessionOwners:
    """The part with a bridge that is never started: only the broker's side is used."""
    return SessionOwners(SimpleNamespace(broker=broker, node=node))  # type: ignore[arg-type]


def _persistent_subscriber(broker: Any, will: P.Will | None = None) -> Client:
    c = Client(broker)
    ack = c.connect("s", clean=False, properties={"Session-Expiry-Interval": 300}, will=will)
    assert ack.reason_code == 0
    c.send(P.Subscribe(1, [P.Subscription("t/#", 1)]))
    c.link.take()
    return c


def test_a_session_moves_with_its_subscriptions_queue_and_inflight() -> None:
    a, _ = make_broker()
    b, _ = make_broker()
    sub = _persistent_subscriber(a)
    pub = Client(a)
    pub.connect("p")
    pub.send(P.Publish("t/1", b"inflight", 1, packet_id=1))  # sent, not acknowledged
    assert [p.payload for p in sub.link.take() if isinstance(p, P.Publish)] == [b"inflight"]
    sub.conn.connection_lost()
    pub.send(P.Publish("t/2", b"queued", 1, packet_id=2))
    state = owners_of(a, "a").hand_over("s", clean_start=False)
    assert state is not None and "s" not in a.sessions and a.subscription_count == 0
    owners_of(b, "b")._import("s", state)
    again = Client(b)
    again.send(P.Connect("s", proto_level=5, clean_start=False, properties={"Session-Expiry-Interval": 300}))
    out = again.link.take()
    assert isinstance(out[0], P.Connack) and out[0].session_present
    got = [p for p in out if isinstance(p, P.Publish)]
    assert [(p.payload, p.dup) for p in got] == [(b"inflight", True), (b"queued", False)]
    other = Client(b)
    other.connect("p2")
    other.send(P.Publish("t/3", b"on b", 0))
    assert [p.payload for p in again.link.take() if isinstance(p, P.Publish)] == [b"on b"]


def _will_watcher(broker: Any) -> Client:
    w = Client(broker)
    w.connect("w")
    w.send(P.Subscribe(1, [P.Subscription("will", 0)]))
    w.link.take()
    return w


def test_a_takeover_keeping_the_session_cancels_the_delayed_will() -> None:
    a, _ = make_broker()
    watcher = _will_watcher(a)
    sub = _persistent_subscriber(a, will=P.Will("will", b"bye", 0, False, {"Will-Delay-Interval": 60}))
    owners_of(a, "a").hand_over("s", clean_start=False)
    assert isinstance(sub.link.take()[-1], P.Disconnect)  # 0x8E
    assert not [p for p in watcher.link.take() if isinstance(p, P.Publish)]


def test_a_clean_start_elsewhere_publishes_the_pending_will() -> None:
    a, _ = make_broker()
    watcher = _will_watcher(a)
    sub = _persistent_subscriber(a, will=P.Will("will", b"bye", 0, False, {"Will-Delay-Interval": 60}))
    sub.conn.connection_lost()
    assert not watcher.link.take()
    assert owners_of(a, "a").hand_over("s", clean_start=True) is None
    assert [p.payload for p in watcher.link.take() if isinstance(p, P.Publish)] == [b"bye"]
    assert "s" not in a.sessions
