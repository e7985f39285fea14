"""The message-event writer: both implementations (ext/eventjson.pyx and mqhook._eventjson_py) write the
same JSON, with exactly the keys and types of the ``mqhook.events.model`` structs, for any input."""

from __future__ import annotations

import base64
import json
import time
from types import ModuleType
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import mqhook._eventjson_py as py_writer
from mqhook.broker.message import Message
from mqhook.events import EVENT_TYPES, MessageWriter, printable_props

from .natives import both, compiled

C_WRITER = compiled("mqhook._eventjson")
IMPLEMENTATIONS = both("mqhook._eventjson", py_writer)
HEAD = b'{"event":"message.delivered","timestamp":'

texts = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)  # MQTT strings: no surrogates
props = st.one_of(
    st.just({}),
    st.builds(lambda pairs: {"User-Property": pairs}, st.lists(st.tuples(texts, texts), max_size=3)),
    st.builds(lambda b: {"Correlation-Data": b, "Content-Type": "text/plain"}, st.binary(max_size=8)),
    st.just({"Message-Expiry-Interval": 30, "Subscription-Identifier": [1, 7]}),
)


def _args(**over: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "head": HEAD,
        "node": b'"mqhook@test"',
        "clientid": "sub-1",
        "username": "undefined",
        "peerhost": "127.0.0.1",
        "peername": "127.0.0.1:5000",
        "mid": "0006614CB578E950D032048234FC0000",
        "payload": b"hello",
        "base64": False,
        "topic": "t/1",
        "qos": 1,
        "retain": False,
        "dup": False,
        "pub_props": None,
        "received_at": 1_700_000_000.123,
        "from_clientid": "pub-1",
        "from_username": "undefined",
        "tail": b"}",
    }
    args.update(over)
    return args


def _write(impl: ModuleType, args: dict[str, Any]) -> dict[str, Any]:
    before = time.time_ns() // 1_000_000
    raw = impl.message_event(*args.values())
    after = time.time_ns() // 1_000_000
    data: dict[str, Any] = json.loads(raw)  # strict JSON: every escape must be valid
    assert before <= data.pop("timestamp") <= after
    return data


@settings(max_examples=300, deadline=None)
@given(
    clientid=texts,
    username=texts,
    topic=texts,
    payload=st.binary(max_size=300),
    b64=st.booleans(),
    qos=st.integers(0, 2),
    retain=st.booleans(),
    dup=st.booleans(),
    props=props,
    received_at=st.floats(0, 4_000_000_000, allow_nan=False),
    sender=st.one_of(st.none(), texts),
)
def test_both_writers_agree_and_decode_to_the_inputs(**kw: Any) -> None:
    args = _args(
        clientid=kw["clientid"],
        username=kw["username"],
        topic=kw["topic"],
        payload=kw["payload"],
        base64=kw["b64"],
        qos=kw["qos"],
        retain=kw["retain"],
        dup=kw["dup"],
        pub_props=msgspec.json.encode(printable_props(kw["props"])) if kw["props"] else None,
        received_at=kw["received_at"],
        from_clientid=kw["sender"],
        from_username=None if kw["sender"] is None else "u",
    )
    ours = _write(py_writer, args)
    if C_WRITER is not None:
        assert _write(C_WRITER, args) == ours
    payload = base64.b64encode(kw["payload"]).decode() if kw["b64"] else kw["payload"].decode("utf-8", "replace")
    assert (ours["clientid"], ours["username"], ours["topic"], ours["payload"]) == (
        kw["clientid"],
        kw["username"],
        kw["topic"],
        payload,
    )
    assert ours["flags"] == {"retain": kw["retain"], "dup": kw["dup"]} and ours["qos"] == kw["qos"]
    assert ours["publish_received_at"] == int(kw["received_at"] * 1000)
    assert ours["pub_props"] == json.loads(msgspec.json.encode(printable_props(kw["props"])))
    assert ("from_clientid" in ours) == (kw["sender"] is not None)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_escapes_every_control_character_and_keeps_unicode(impl: ModuleType) -> None:
    nasty = "".join(map(chr, range(32))) + '"\\/\u2028é\U0001f600\x7f'
    data = _write(impl, _args(clientid=nasty, topic=nasty * 3, payload=nasty.encode()))
    assert data["clientid"] == nasty and data["topic"] == nasty * 3 and data["payload"] == nasty


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_large_events_grow_the_buffer(impl: ModuleType) -> None:
    big = b"x" * 3_000_000 + b'"'
    data = _write(impl, _args(payload=big, topic="t" * 70_000))
    assert data["payload"] == big.decode() and len(data["topic"]) == 70_000
    small = _write(impl, _args())  # and the next, small event is whole
    assert small["payload"] == "hello" and small["topic"] == "t/1"


# -- MessageWriter: which value goes in which field -----------------------------------------------


class Session:
    """What the writer reads of a receiver's session."""

    client_id = "sub"
    client_info = ("alice", "10.0.0.2", "10.0.0.2:4000")


def _message(**over: Any) -> Message:
    kw: dict[str, Any] = {"username": None, "peerhost": "10.0.0.1", "peername": "10.0.0.1:3000", "dup": True}
    kw.update(over)
    return Message("a/b", b"\xffhi", 1, True, {"User-Property": [("k", "v")]}, "pub", **kw)


def _decoded(name: str, raw: bytes) -> Any:
    event = msgspec.json.decode(raw, type=EVENT_TYPES[name])
    assert set(json.loads(raw)) == {"event", *type(event).__struct_fields__}
    return event


def test_publish_and_dropped_describe_the_publisher() -> None:
    w = MessageWriter("n@h")
    msg = _message()
    pub = _decoded("message.publish", w.publish("plain", msg))
    assert (pub.clientid, pub.username, pub.peerhost, pub.peername) == ("pub", "undefined", "10.0.0.1", "10.0.0.1:3000")
    assert (pub.node, pub.id, pub.payload, pub.qos) == ("n@h", msg.id, "\ufffdhi", 1)
    assert (pub.flags.retain, pub.flags.dup, pub.client_attrs) == (True, True, {})
    assert pub.pub_props == {"User-Property": {"k": "v"}, "User-Property-Pairs": [{"key": "k", "value": "v"}]}
    dropped = _decoded("message.dropped", w.dropped("base64", msg, "no_subscribers"))
    assert (dropped.reason, dropped.id, dropped.payload) == ("no_subscribers", msg.id, "/2hp")


def test_delivery_events_describe_the_receiver_and_the_copy() -> None:
    w = MessageWriter("n@h")
    msg = _message(username="bob")
    delivered = _decoded("message.delivered", w.delivered("plain", msg, Session(), 0, False))  # type: ignore[arg-type]
    assert (delivered.clientid, delivered.username, delivered.peerhost, delivered.peername) == (
        "sub",
        "alice",
        "10.0.0.2",
        "10.0.0.2:4000",
    )
    assert (delivered.from_clientid, delivered.from_username, delivered.qos, delivered.flags.retain) == (
        "pub",
        "bob",
        0,
        False,
    )
    acked = _decoded("message.acked", w.acked("plain", msg, Session(), 1, {"Reason-String": "ok"}))  # type: ignore[arg-type]
    assert acked.puback_props == {"User-Property": {}, "Reason-String": "ok"} and acked.flags.retain is True
    plain_ack = _decoded("message.acked", w.acked("plain", msg, Session(), 1, {}))  # type: ignore[arg-type]
    assert plain_ack.puback_props == {"User-Property": {}}
    dd = _decoded("delivery.dropped", w.delivery_dropped("plain", msg, Session(), 1, "queue_full"))  # type: ignore[arg-type]
    assert (dd.reason, dd.clientid, dd.id) == ("queue_full", "sub", msg.id)
